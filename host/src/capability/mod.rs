//! The host side of the WIT imports, one capability per interface, modelled on wasmtime's
//! `wasmtime-wasi`: each capability has its own state, a small view trait through which a
//! store's data hands that state out, and an `add_to_linker` that links the interface for any
//! store implementing the view.
//!
//! | capability | WIT | state | view |
//! |---|---|---|---|
//! | [`database`] | `types`, `database` (handles, cursors, bulk writers) | [`DatabaseState`] | [`DatabaseView`] |
//! | [`events`] | `events` (log, progress, reject) | [`EventsState`] | [`EventsView`] |
//!
//! A new WIT host call is a method in the capability of its interface; the checks every
//! database call passes are in one place, [`guard`].

pub mod database;
pub mod events;
pub mod guard;
pub mod tally;

pub use database::{Cursor, DatabaseCtx, DatabaseState, DatabaseView, typed};
pub use events::{EventSink, EventsState, EventsView};
pub use tally::Tally;
