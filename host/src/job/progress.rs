//! Progress while a job runs, and the timeline it leaves.
//!
//! On a terminal each database gets a bar (the table being loaded, rows/s, ETA); elsewhere a
//! table that takes a while gets a plain line every few seconds; `--quiet` shows neither. Every
//! event can also go to a JSON-lines file (`--progress-events`), and the timeline (when each
//! database and table started and finished, when the first row reached a target) goes into
//! the `--report` JSON. Row counts come from the host's own bulk writers, not from the
//! component: what is shown is what was sent. `rows` events are coalesced (none for an empty
//! write, at most [`ROWS_EVENTS_PER_SECOND`] a table), so the events file grows with time and
//! tables, never with the number of writes; a table's last count is always reported.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

static PROCESS_START: OnceLock<Instant> = OnceLock::new();

/// When the process started (the first call fixes it: `cli::main` calls this first thing).
pub fn process_start() -> Instant {
    *PROCESS_START.get_or_init(Instant::now)
}

fn since_start_ms() -> u64 {
    process_start().elapsed().as_millis() as u64
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// indicatif bars on stderr.
    Bars,
    /// A line now and then (logs, CI, pipes).
    Lines,
    /// Nothing but warnings, errors and the final result.
    Quiet,
}

impl Display {
    /// Bars when stderr is a terminal, lines otherwise, nothing when quiet.
    pub fn choose(quiet: bool) -> Display {
        if quiet {
            Display::Quiet
        } else if std::io::stderr().is_terminal() {
            Display::Bars
        } else {
            Display::Lines
        }
    }
}

/// How often a long table gets a plain line.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// `rows` events per second and table at most: a follower sees a table move a few times a
/// second, and a component writing tiny batches in a loop cannot grow the events file faster.
pub const ROWS_EVENTS_PER_SECOND: u32 = 4;

/// One event, as `--progress-events` writes it (one JSON object per line).
#[derive(Serialize, Clone, Debug)]
pub struct ProgressEvent<'a> {
    /// Milliseconds since the process started.
    pub at_ms: u64,
    /// `component-ready`, `database-started`, `table-started`, `rows`, `table-loaded`,
    /// `database-finished` or `first-row`.
    pub event: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub database: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub table: &'a str,
    /// Rows sent to the target so far (of this table).
    pub rows: u64,
    /// Rows the source table has, when known (0: unknown).
    pub rows_total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
}

/// When things happened, in milliseconds since the process started (report field `timeline`).
#[derive(Serialize, Clone, Debug, Default)]
pub struct Timeline {
    /// The migration component was compiled (or loaded from the cache) and instantiated.
    pub component_ready_ms: Option<u64>,
    /// The first row was sent to a target.
    pub first_row_ms: Option<u64>,
    pub databases: Vec<DatabaseTimeline>,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct DatabaseTimeline {
    pub database: String,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub ok: Option<bool>,
    pub tables: Vec<TableTimeline>,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct TableTimeline {
    pub table: String,
    /// The bulk load began (the table exists in the target).
    pub started_ms: u64,
    /// The bulk load finished (before keys, indexes and verification).
    pub loaded_ms: Option<u64>,
    pub rows: u64,
}

/// Progress of one job; clones share it.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    display: Display,
    multi: Option<MultiProgress>,
    events_file: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
    sink: Option<ProgressSink>,
    state: Mutex<State>,
}

/// A caller's receiver of every progress event as it happens (the hosting service streams them
/// to its clients); it must return quickly, since it runs on the job's own threads.
#[derive(Clone)]
pub struct ProgressSink(pub Arc<dyn Fn(&ProgressEvent<'_>) + Send + Sync>);

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressSink")
    }
}

#[derive(Default)]
struct State {
    timeline: Timeline,
    live: HashMap<String, LiveTable>,
    bars: HashMap<String, ProgressBar>,
}

impl State {
    /// The timeline entry of `database`'s latest start.
    fn latest(&mut self, database: &str) -> Option<&mut DatabaseTimeline> {
        self.timeline.databases.iter_mut().rev().find(|d| d.database == database)
    }
}

/// The table a database is loading now.
struct LiveTable {
    table: String,
    started: Instant,
    rows: u64,
    total: u64,
    last_line: Instant,
    /// When the last `rows` event went out, and the count it carried.
    last_event: Option<Instant>,
    reported_rows: u64,
}

impl Progress {
    /// Progress shown as `display`, with every event also written to `events_file` and given to
    /// `sink` if given.
    pub fn new(display: Display, events_file: Option<&Path>, sink: Option<ProgressSink>) -> Result<Progress, String> {
        let events_file = match events_file {
            Some(p) => Some(Mutex::new(std::io::BufWriter::new(
                std::fs::File::create(p).map_err(|e| format!("cannot write {}: {e}", p.display()))?,
            ))),
            None => None,
        };
        let multi = (display == Display::Bars).then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Ok(Progress { inner: Arc::new(Inner { display, multi, events_file, sink, state: Mutex::default() }) })
    }

    /// No display, no file: only the timeline.
    pub fn silent() -> Progress {
        Progress::new(Display::Quiet, None, None).expect("no file to open")
    }

    pub fn display(&self) -> Display {
        self.inner.display
    }

    /// Make this the console's progress: lines are printed around its bars, and a quiet
    /// display hides the console's informational lines.
    pub fn attach_console(&self) {
        super::console::set_console(self.inner.display == Display::Quiet, self.inner.multi.clone());
    }

    fn emit(&self, event: ProgressEvent<'_>) {
        if let Some(sink) = &self.inner.sink {
            (sink.0)(&event);
        }
        if let Some(file) = &self.inner.events_file
            && let Ok(line) = serde_json::to_string(&event)
        {
            let mut f = file.lock().unwrap();
            let _ = writeln!(f, "{line}");
            // Flushed at table granularity: a reader following the file sees loads as they end.
            if event.event != "rows" {
                let _ = f.flush();
            }
        }
    }

    fn event<'a>(event: &'static str, database: &'a str, table: &'a str) -> ProgressEvent<'a> {
        ProgressEvent { at_ms: since_start_ms(), event, database, table, rows: 0, rows_total: 0, ok: None }
    }

    /// Emit `live`'s count as a `rows` event, unless the last one already said it: a table's
    /// last count is reported however its events were coalesced.
    fn flush_rows(&self, database: &str, live: &mut LiveTable) {
        if live.rows != live.reported_rows {
            live.reported_rows = live.rows;
            live.last_event = Some(Instant::now());
            self.emit(ProgressEvent {
                rows: live.rows,
                rows_total: live.total,
                ..Self::event("rows", database, &live.table)
            });
        }
    }

    /// The component is instantiated: everything from here on is migration work.
    pub fn component_ready(&self) {
        let mut s = self.inner.state.lock().unwrap();
        if s.timeline.component_ready_ms.is_none() {
            let e = Self::event("component-ready", "", "");
            s.timeline.component_ready_ms = Some(e.at_ms);
            drop(s);
            self.emit(e);
        }
    }

    pub fn database_started(&self, database: &str) {
        let e = Self::event("database-started", database, "");
        let mut s = self.inner.state.lock().unwrap();
        s.timeline.databases.push(DatabaseTimeline {
            database: database.to_string(),
            started_ms: e.at_ms,
            ..Default::default()
        });
        if let Some(multi) = &self.inner.multi {
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} {msg:24!} [{bar:30}] {human_pos}/{human_len} rows {rate:>12} ETA {eta}",
                )
                .expect("valid template")
                .with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0} rows/s", state.per_sec());
                })
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("{database:<16}"));
            bar.set_message("schema");
            s.bars.insert(database.to_string(), bar);
        }
        drop(s);
        self.emit(e);
    }

    pub fn database_finished(&self, database: &str, ok: bool) {
        let mut s = self.inner.state.lock().unwrap();
        if let Some(mut live) = s.live.remove(database) {
            self.flush_rows(database, &mut live);
        }
        let mut e = Self::event("database-finished", database, "");
        e.ok = Some(ok);
        if let Some(db) = s.latest(database) {
            db.finished_ms = Some(e.at_ms);
            db.ok = Some(ok);
        }
        if let Some(bar) = s.bars.remove(database) {
            bar.finish_and_clear();
            if let Some(multi) = &self.inner.multi {
                multi.remove(&bar);
            }
        }
        drop(s);
        self.emit(e);
    }

    /// A bulk load into `table` began.
    pub fn table_started(&self, database: &str, table: &str) {
        let e = Self::event("table-started", database, table);
        let mut s = self.inner.state.lock().unwrap();
        if let Some(db) = s.latest(database) {
            db.tables.push(TableTimeline { table: table.to_string(), started_ms: e.at_ms, ..Default::default() });
        }
        let now = Instant::now();
        let live = LiveTable {
            table: table.to_string(),
            started: now,
            rows: 0,
            total: 0,
            last_line: now,
            last_event: None,
            reported_rows: 0,
        };
        if let Some(mut previous) = s.live.insert(database.to_string(), live) {
            self.flush_rows(database, &mut previous);
        }
        if let Some(bar) = s.bars.get(database) {
            bar.reset();
            bar.set_length(0);
            bar.set_message(table.to_string());
        }
        drop(s);
        self.emit(e);
    }

    /// The component says how far it is and how many rows the table has.
    pub fn table_rows_total(&self, database: &str, table: &str, rows_total: u64) {
        let mut s = self.inner.state.lock().unwrap();
        let Some(live) = s.live.get_mut(database).filter(|l| l.table == table) else { return };
        live.total = rows_total;
        if let Some(bar) = s.bars.get(database) {
            bar.set_length(rows_total);
        }
    }

    /// `rows` more rows were sent to `table`. An empty write changes nothing and says nothing;
    /// the `rows` event goes out at most [`ROWS_EVENTS_PER_SECOND`] times a second (the table's
    /// last count follows when it is loaded, or when the next table or the database ends).
    pub fn rows_sent(&self, database: &str, table: &str, rows: u64) {
        if rows == 0 {
            return;
        }
        let mut s = self.inner.state.lock().unwrap();
        let first = s.timeline.first_row_ms.is_none();
        let mut line = None;
        let mut e = Self::event("rows", database, table);
        let mut due = false;
        if first {
            s.timeline.first_row_ms = Some(e.at_ms);
        }
        if let Some(live) = s.live.get_mut(database).filter(|l| l.table == table) {
            live.rows += rows;
            e.rows = live.rows;
            e.rows_total = live.total;
            let every = Duration::from_secs(1) / ROWS_EVENTS_PER_SECOND;
            if first || live.last_event.is_none_or(|at| at.elapsed() >= every) {
                due = true;
                live.last_event = Some(Instant::now());
                live.reported_rows = live.rows;
            }
            if self.inner.display == Display::Lines && live.last_line.elapsed() >= LINE_EVERY {
                live.last_line = Instant::now();
                line = Some(progress_line(database, live));
            }
        }
        if let Some(bar) = s.bars.get(database) {
            bar.inc(rows);
        }
        drop(s);
        if first {
            // The same instant the timeline recorded.
            self.emit(ProgressEvent { event: "first-row", ..e.clone() });
        }
        if due {
            self.emit(e);
        }
        if let Some(line) = line {
            super::console::detail(&line);
        }
    }

    /// The bulk load into `table` finished with `rows` rows.
    pub fn table_loaded(&self, database: &str, table: &str, rows: u64) {
        let mut s = self.inner.state.lock().unwrap();
        if let Some(live) = s.live.get_mut(database).filter(|l| l.table == table) {
            self.flush_rows(database, live);
        }
        let mut e = Self::event("table-loaded", database, table);
        e.rows = rows;
        if let Some(t) = s.latest(database).and_then(|d| d.tables.iter_mut().rev().find(|t| t.table == table)) {
            t.loaded_ms = Some(e.at_ms);
            t.rows = rows;
        }
        if let Some(live) = s.live.get(database).filter(|l| l.table == table) {
            e.rows_total = live.total;
        }
        if let Some(bar) = s.bars.get(database) {
            bar.set_message(format!("{table}: keys, verify"));
        }
        drop(s);
        self.emit(e);
    }

    /// What happened when, for the report.
    pub fn timeline(&self) -> Timeline {
        self.inner.state.lock().unwrap().timeline.clone()
    }

    /// Clear the bars (before the final summary).
    pub fn finish(&self) {
        let mut s = self.inner.state.lock().unwrap();
        for (_, bar) in s.bars.drain() {
            bar.finish_and_clear();
        }
        if let Some(file) = &self.inner.events_file {
            let _ = file.lock().unwrap().flush();
        }
    }
}

fn progress_line(database: &str, live: &LiveTable) -> String {
    let secs = live.started.elapsed().as_secs_f64().max(1e-3);
    let rate = live.rows as f64 / secs;
    if live.total > 0 {
        let left = live.total.saturating_sub(live.rows) as f64 / rate.max(1.0);
        format!(
            "… {database}: {} {}/{} rows ({:.0} %), {:.0} rows/s, ~{left:.0} s left",
            live.table,
            live.rows,
            live.total,
            100.0 * live.rows as f64 / live.total as f64,
            rate
        )
    } else {
        format!("… {database}: {} {} rows, {rate:.0} rows/s", live.table, live.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_records_databases_tables_and_the_first_row() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("events.jsonl");
        let p = Progress::new(Display::Quiet, Some(&events), None).unwrap();
        p.component_ready();
        p.database_started("server_db");
        p.table_started("server_db", "users");
        p.table_rows_total("server_db", "users", 3);
        p.rows_sent("server_db", "users", 0);
        assert!(p.timeline().first_row_ms.is_none(), "an empty batch is not a row");
        p.rows_sent("server_db", "users", 2);
        p.rows_sent("server_db", "users", 1);
        p.table_loaded("server_db", "users", 3);
        p.database_finished("server_db", true);
        p.finish();
        let t = p.timeline();
        assert!(t.component_ready_ms.unwrap() <= t.first_row_ms.unwrap());
        let db = &t.databases[0];
        assert_eq!((db.database.as_str(), db.ok), ("server_db", Some(true)));
        assert_eq!((db.tables[0].table.as_str(), db.tables[0].rows), ("users", 3));
        assert!(db.tables[0].loaded_ms.unwrap() <= db.finished_ms.unwrap());
        let lines: Vec<serde_json::Value> =
            std::fs::read_to_string(&events).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let kinds: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "component-ready",
                "database-started",
                "table-started",
                "first-row",
                "rows",
                "rows",
                "table-loaded",
                "database-finished"
            ]
        );
        // The write of 1 came too soon after the one of 2 for an event of its own: the count
        // it made goes out before the table is reported loaded.
        assert_eq!((lines[5]["rows"].as_u64(), lines[5]["rows_total"].as_u64()), (Some(3), Some(3)));
        assert_eq!((lines[6]["rows"].as_u64(), lines[6]["rows_total"].as_u64()), (Some(3), Some(3)));
    }

    /// Writes in a tight loop make a few events a second, empty ones none, and every table's
    /// last count is reported: when loaded, when the next table starts, when the database ends.
    #[test]
    fn rows_events_are_coalesced_and_end_with_each_tables_count() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("events.jsonl");
        let p = Progress::new(Display::Quiet, Some(&events), None).unwrap();
        p.database_started("server_db");
        p.table_started("server_db", "users");
        let started = Instant::now();
        let mut sent = 0;
        while started.elapsed() < Duration::from_millis(600) {
            p.rows_sent("server_db", "users", 0);
            p.rows_sent("server_db", "users", 1);
            sent += 1;
        }
        p.table_loaded("server_db", "users", sent);
        p.table_started("server_db", "tags");
        p.rows_sent("server_db", "tags", 5);
        p.rows_sent("server_db", "tags", 2);
        p.table_started("server_db", "orphans");
        p.rows_sent("server_db", "orphans", 4);
        p.rows_sent("server_db", "orphans", 3);
        p.database_finished("server_db", false);
        p.finish();
        let lines: Vec<serde_json::Value> =
            std::fs::read_to_string(&events).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let rows = |table: &str| -> Vec<u64> {
            lines
                .iter()
                .filter(|l| l["event"] == "rows" && l["table"] == table)
                .map(|l| l["rows"].as_u64().unwrap())
                .collect()
        };
        let users = rows("users");
        assert!(
            users.len() <= 1 + 600 / (1000 / ROWS_EVENTS_PER_SECOND as usize) + 1,
            "{} events for {sent} writes",
            users.len()
        );
        assert!(sent > 10 * users.len() as u64, "{} events for {sent} writes", users.len());
        assert_eq!(users.last(), Some(&sent), "the table's last count");
        assert!(users.iter().all(|&n| n > 0) && users.windows(2).all(|w| w[0] < w[1]), "{users:?}");
        assert_eq!(rows("tags"), [5, 7], "flushed when the next table starts");
        assert_eq!(rows("orphans"), [4, 7], "flushed when the database ends");
    }
}
