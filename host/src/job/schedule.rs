//! When each database of a job runs: largest first (the likely critical path), `parallel` at a
//! time, each on a thread of its own that drives it on the job's runtime, with the threads of
//! every database but the largest at a lower CPU priority. The key decision: a migration is
//! CPU-bound on small machines, so databases run on threads (not as tasks of one thread) and
//! the largest gets the cores first.

/// Run `work(i)` for each index of `order`, `parallel` at a time ([`on_threads`]), and return
/// `(index, outcome)` pairs in the order they finished. On a current-thread runtime (a library
/// caller's choice) nothing but the thread that runs it can drive the connections, so there the
/// returned future interleaves the work on this thread instead; on any other runtime the work
/// is done, on threads, before this returns. Call it from within the job's runtime.
pub(super) fn each_database<R, F>(
    parallel: usize,
    order: &[usize],
    work: impl Fn(usize) -> F + Sync,
) -> impl std::future::Future<Output = Vec<(usize, R)>>
where
    R: Send,
    F: std::future::Future<Output = R>,
{
    use futures_util::future::Either;
    use futures_util::{FutureExt, StreamExt};
    if tokio::runtime::Handle::current().runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
        return Either::Left(std::future::ready(on_threads(parallel, order, work)));
    }
    // Made here, not inside an `async` block, so that `work` is not held across an await
    // (the job's future must stay `Send` for a multi-thread caller's `spawn`).
    let pending: Vec<_> = order.iter().map(|&i| work(i).map(move |outcome| (i, outcome))).collect();
    Either::Right(futures_util::stream::iter(pending).buffer_unordered(parallel.max(1)).collect())
}

/// Run `work(i)` for each index of `order`, `parallel` at a time, each on a thread of its own that
/// drives it on the job's runtime (the tasks it spawns, such as connections, stay on the
/// runtime's workers). Driven by the one thread that runs the job, the databases' instances
/// never ran on two cores at once, and a migration is CPU-bound on small machines. Indexes are
/// taken in `order`; a thread that finishes one takes the next at once. Returns `(index,
/// outcome)` pairs in the order they finished. Needs a multi-thread runtime ([`each_database`]).
///
/// Every database after the first (the largest, so the likely critical path) runs at a lower
/// CPU priority ([`yield_cores_to_the_first_database`]).
fn on_threads<R, F>(parallel: usize, order: &[usize], work: impl Fn(usize) -> F + Sync) -> Vec<(usize, R)>
where
    R: Send,
    F: std::future::Future<Output = R>,
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    let runtime = tokio::runtime::Handle::current();
    let next = AtomicUsize::new(0);
    let finished = std::sync::Mutex::new(Vec::with_capacity(order.len()));
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            for _ in 0..parallel.max(1).min(order.len()) {
                scope.spawn(|| {
                    while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                        if i != order[0] {
                            yield_cores_to_the_first_database();
                        }
                        let outcome = runtime.block_on(work(i));
                        finished.lock().unwrap_or_else(|e| e.into_inner()).push((i, outcome));
                    }
                });
            }
        })
    });
    finished.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// How much lower than the job's own priority the other databases' threads run. The largest
/// database decides when the job ends; with two cores shared by all databases (and, for
/// PostgreSQL → SQLite, by the server reading them), the small ones at equal priority slow it
/// down for as long as they run, and its single-threaded end (indexes, verification, sync)
/// then runs with the other core idle. At +10 they mostly take what it leaves: on the bench's
/// 200k rows, PostgreSQL → SQLite took 1.06 s (median of 7) instead of 1.17 s at equal
/// priority; +5 gave 1.09 s and +19 1.07 s; SQLite → PostgreSQL did not change
/// (docs/performance.md). Not +19: a thread cannot
/// take its priority back without privileges, so once the largest database is done the others
/// stay lowered, and next to an unrelated busy process a +19 thread gets ~1.5% of a core
/// where a +10 one still gets ~10%.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const OTHER_DATABASES_NICENESS: libc::c_int = 10;

/// Lower the calling thread's CPU priority by [`OTHER_DATABASES_NICENESS`] (to at most +19),
/// once per thread however many databases it takes on. Threads it starts afterwards, such as a
/// SQLite file's own thread, inherit it. Linux only: there `setpriority(PRIO_PROCESS, 0, …)`
/// applies to the calling thread, while elsewhere it would renice the whole process. Best
/// effort: a failure leaves the priority as it was.
fn yield_cores_to_the_first_database() {
    #[cfg(target_os = "linux")]
    {
        thread_local! {
            static YIELDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        }
        if YIELDED.replace(true) {
            return;
        }
        // SAFETY: getpriority and setpriority only read and set the calling thread's nice value.
        unsafe {
            let current = libc::getpriority(libc::PRIO_PROCESS, 0);
            let target = current.saturating_add(OTHER_DATABASES_NICENESS).min(19);
            if target > current {
                libc::setpriority(libc::PRIO_PROCESS, 0, target);
            }
        }
    }
}

/// The indexes `0..count` largest first by `size` (ties in index order): the biggest database
/// is the critical path, so it starts first, and the others yield the cores to it
/// ([`on_threads`]).
pub(super) fn largest_first(count: usize, size: impl Fn(usize) -> u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(size(i)));
    order
}

#[cfg(test)]
mod tests {
    use super::each_database;
    use std::thread::ThreadId;

    #[test]
    fn largest_first_keeps_the_plan_order_between_equals() {
        let sizes = [5, 9, 0, 9, 7];
        assert_eq!(super::largest_first(sizes.len(), |i| sizes[i]), [1, 3, 4, 0, 2]);
        assert!(super::largest_first(0, |_| 0).is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn only_the_calling_thread_yields_and_only_once() {
        // SAFETY: getpriority only reads the calling thread's nice value.
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let before = nice();
        let (after_one, after_two) = std::thread::spawn(move || {
            super::yield_cores_to_the_first_database();
            let one = nice();
            super::yield_cores_to_the_first_database();
            (one, nice())
        })
        .join()
        .unwrap();
        assert_eq!(after_one, (before + super::OTHER_DATABASES_NICENESS).min(19));
        assert_eq!(after_two, after_one, "a thread that already yielded keeps its priority");
        assert_eq!(nice(), before, "the other threads keep theirs");
    }

    /// Work that needs the runtime, as a database's does: it spawns a task (a connection) and
    /// waits for it. Says which thread drove it.
    async fn spawned_echo(i: usize) -> (usize, ThreadId) {
        let echoed = tokio::spawn(async move { i }).await.unwrap();
        (echoed, std::thread::current().id())
    }

    #[test]
    fn on_a_multi_thread_runtime_work_runs_off_the_calling_thread_and_all_of_it_runs() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let caller = std::thread::current().id();
        let mut done = runtime.block_on(async { each_database(2, &[2, 0, 1], spawned_echo).await });
        done.sort_by_key(|(i, _)| *i);
        assert_eq!(done.iter().map(|(i, (echoed, _))| (*i, *echoed)).collect::<Vec<_>>(), [(0, 0), (1, 1), (2, 2)]);
        assert!(done.iter().all(|(_, (_, thread))| *thread != caller));
    }

    #[test]
    fn on_a_current_thread_runtime_work_is_interleaved_on_the_calling_thread() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let caller = std::thread::current().id();
        let mut done = runtime.block_on(async { each_database(2, &[2, 0, 1], spawned_echo).await });
        done.sort_by_key(|(i, _)| *i);
        assert_eq!(done.iter().map(|(i, (echoed, _))| (*i, *echoed)).collect::<Vec<_>>(), [(0, 0), (1, 1), (2, 2)]);
        assert!(done.iter().all(|(_, (_, thread))| *thread == caller));
    }
}
