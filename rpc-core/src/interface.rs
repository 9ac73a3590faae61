//! Static descriptions of interfaces and procedures, emitted by the code generator and
//! shared by the client stubs (to address calls) and the server (to build its dispatch
//! table).

/// One interface version, as the generated code describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// The interface's name in the IDL.
    pub name: &'static str,
    /// The interface id carried in every call's header.
    pub id: u32,
    /// The interface version.
    pub version: u32,
    /// Its procedures, in declaration order.
    pub procedures: &'static [ProcedureInfo],
    /// The delivery semantics its calls use by default, from an `[at_most_once]`,
    /// `[at_least_once]` or `[exactly_once]` attribute on the interface in the IDL.
    ///
    /// A client picks a call's semantics in this order: `oneway` procedures are always
    /// at-most-once; then [`crate::CallOptions`]' semantics if set; then at-least-once for
    /// an `[idempotent]` procedure; then this; then the client's configured default.
    /// `None` (no attribute) defers to the client's default.
    pub default_semantics: Option<crate::frame::Semantics>,
}

/// The procedure a call is for (what server and client layers see).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallTarget {
    /// The interface (name, id, version).
    pub interface: &'static InterfaceInfo,
    /// The procedure (name, number, flags).
    pub procedure: &'static ProcedureInfo,
}

/// One procedure of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcedureInfo {
    /// The procedure's name in the IDL.
    pub name: &'static str,
    /// Its number within the interface.
    pub number: u32,
    /// `oneway`: no reply is sent.
    pub oneway: bool,
    /// `[idempotent]`: safe to execute more than once.
    pub idempotent: bool,
}

impl InterfaceInfo {
    /// The procedure with this number, if any.
    pub fn procedure(&self, number: u32) -> Option<&'static ProcedureInfo> {
        self.procedures.iter().find(|p| p.number == number)
    }
}
