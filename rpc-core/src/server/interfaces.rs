//! The interface table: every hosted interface version, found by (id, version) with a
//! binary search over a sorted array built at start-up, then its procedure by a dense
//! per-interface table (no string maps, no allocation per call).

use std::sync::Arc;

use super::{ServerError, Service};
use crate::error::Status;
use crate::interface::{InterfaceInfo, ProcedureInfo};
use crate::metrics::ProcedureMetrics;

/// Procedure numbers up to this use a dense lookup table; above it, binary search.
const DENSE_PROCEDURE_LIMIT: u32 = 4096;

/// Hosted interfaces, sorted by (id, version) for binary search.
#[derive(Debug)]
pub(super) struct InterfaceTable {
    entries: Vec<Arc<Hosted>>,
}

pub(super) struct Hosted {
    pub(super) info: &'static InterfaceInfo,
    pub(super) service: Arc<dyn Service>,
    /// Procedure number to an index into `procedures`.
    table: ProcedureTable,
    procedures: Box<[Procedure]>,
}

/// One hosted procedure: its description, where it runs, its metric handles.
#[derive(Debug)]
pub(super) struct Procedure {
    pub(super) info: &'static ProcedureInfo,
    pub(super) placement: Placement,
    pub(super) metrics: ProcedureMetrics,
}

impl Hosted {
    /// Procedure `number`'s index, if the interface has it.
    #[inline]
    pub(super) fn find(&self, number: u32) -> Option<u32> {
        self.table.get(number)
    }

    /// The procedure at `index` (from [`Hosted::find`]).
    #[inline]
    pub(super) fn procedure(&self, index: u32) -> &Procedure {
        &self.procedures[index as usize]
    }
}

impl std::fmt::Debug for Hosted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosted").field("info", &self.info).finish()
    }
}

/// Where a procedure's handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placement {
    /// On the worker pool.
    Pool,
    /// Declared `[inline]`: on the dispatch loop, if the server allows it.
    Inline,
}

#[derive(Debug)]
enum ProcedureTable {
    /// `table[n]` is procedure `n`'s index, if it exists.
    Dense(Box<[Option<u32>]>),
    /// Sorted procedure numbers with their indexes (used when some number exceeds the
    /// dense limit).
    Sparse(Box<[(u32, u32)]>),
}

impl ProcedureTable {
    fn new(info: &InterfaceInfo) -> Self {
        let max = info.procedures.iter().map(|p| p.number).max().unwrap_or(0);
        if max <= DENSE_PROCEDURE_LIMIT {
            let mut table = vec![None; max as usize + 1];
            for (i, p) in info.procedures.iter().enumerate() {
                table[p.number as usize] = Some(i as u32);
            }
            ProcedureTable::Dense(table.into_boxed_slice())
        } else {
            let mut numbers: Vec<(u32, u32)> = info
                .procedures
                .iter()
                .enumerate()
                .map(|(i, p)| (p.number, i as u32))
                .collect();
            numbers.sort_unstable_by_key(|&(n, _)| n);
            ProcedureTable::Sparse(numbers.into_boxed_slice())
        }
    }

    #[inline]
    fn get(&self, number: u32) -> Option<u32> {
        match self {
            ProcedureTable::Dense(t) => t.get(number as usize).copied().flatten(),
            ProcedureTable::Sparse(t) => t
                .binary_search_by_key(&number, |&(n, _)| n)
                .ok()
                .map(|i| t[i].1),
        }
    }
}

impl InterfaceTable {
    pub(super) fn new(services: Vec<Arc<dyn Service>>) -> Result<Self, ServerError> {
        let mut entries: Vec<Arc<Hosted>> = services
            .into_iter()
            .map(|service| {
                let info = service.info();
                let procedures = info
                    .procedures
                    .iter()
                    .map(|p| Procedure {
                        info: p,
                        placement: match service.is_inline(p.number) {
                            true => Placement::Inline,
                            false => Placement::Pool,
                        },
                        metrics: ProcedureMetrics::server(info, p),
                    })
                    .collect();
                Arc::new(Hosted {
                    info,
                    table: ProcedureTable::new(info),
                    procedures,
                    service,
                })
            })
            .collect();
        entries.sort_by_key(|h| (h.info.id, h.info.version));
        for pair in entries.windows(2) {
            if (pair[0].info.id, pair[0].info.version) == (pair[1].info.id, pair[1].info.version) {
                return Err(ServerError::DuplicateService {
                    name: pair[1].info.name,
                    id: pair[1].info.id,
                    version: pair[1].info.version,
                });
            }
        }
        Ok(InterfaceTable { entries })
    }

    pub(super) fn lookup(&self, id: u32, version: u32) -> Result<&Arc<Hosted>, Status> {
        match self
            .entries
            .binary_search_by_key(&(id, version), |h| (h.info.id, h.info.version))
        {
            Ok(i) => Ok(&self.entries[i]),
            Err(_) => {
                let mut versions = self
                    .entries
                    .iter()
                    .filter(|h| h.info.id == id)
                    .map(|h| h.info.version);
                match versions.next() {
                    None => Err(Status::UnknownInterface { id }),
                    Some(first) => {
                        let (low, high) =
                            versions.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v)));
                        Err(Status::VersionMismatch { low, high })
                    }
                }
            }
        }
    }
}
