//! `migrate-to-postgres` keeps allocating 64 MiB chunks and touching every page of each, so
//! the memory is really committed, until the host's memory cap refuses to grow the linear
//! memory (the allocation then fails and the component aborts: a trap).

include!("../../shell.rs");

const CHUNK: usize = 64 << 20;

fn hostile(_source: &Handle, _target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        events::log(Level::Info, &format!("memory-bomb: holding {} MiB, asking for 64 more", hoard.len() * 64));
        // Filled with a non-zero byte, so every page is written (zeroed pages might be left
        // untouched by a calloc-style allocation).
        let chunk: Vec<u8> = vec![0xA5; CHUNK];
        hoard.push(std::hint::black_box(chunk));
    }
}
