//! What one instance's store holds: an empty WASI context (no files, network, environment or
//! stdio), the resource table the capabilities share, each capability's state, and the limits'
//! meters. It hands each capability its part through the capability's view trait.

use super::limits::{CpuMeter, MemoryCap};
use crate::capability::{DatabaseCtx, DatabaseState, DatabaseView, EventSink, EventsState, EventsView};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Per-instance store data.
pub struct HostState {
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) database: DatabaseState,
    pub(super) events: EventsState,
    pub(super) memory: MemoryCap,
    pub(super) cpu: CpuMeter,
}

impl HostState {
    pub(super) fn new(events: Box<dyn EventSink>, memory: MemoryCap, cpu: CpuMeter) -> HostState {
        HostState {
            wasi: WasiCtxBuilder::new().allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false).build(),
            table: ResourceTable::new(),
            database: DatabaseState::default(),
            events: EventsState::new(events),
            memory,
            cpu,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl DatabaseView for HostState {
    fn database(&mut self) -> DatabaseCtx<'_> {
        DatabaseCtx { state: &mut self.database, events: &mut self.events, table: &mut self.table }
    }
}

impl EventsView for HostState {
    fn events(&mut self) -> &mut EventsState {
        &mut self.events
    }
}
