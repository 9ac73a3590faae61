//! A crate that uses `idl!` the way users do, with lints as strict as theirs.
#![deny(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

/// The generated module.
pub mod calc {
    rpc_macros::idl!(
        "calc",
        r#"
        const MAX_NAME = 32;
        enum Op { ADD = 1, SUB = 2 };
        /// A point.
        struct Point { int x; int y; };
        union Result switch (int status) { case 0: double value; default: string error<>; };

        /// Anonymous: named `Calc` after the file name.
        interface {
            /// Adds.
            int add(int a, int b);
            Result apply(Op op, double a, double b);
            string name(Point p);
            void ping();
            oneway void log(string line<MAX_NAME>);
        };
    "#
    );
}

use calc::{Calc, CalcBlockingClient, CalcClient, CalcServer};
use rpc_core::{CallContext, Status};

struct Impl;

impl Calc for Impl {
    async fn add(&self, _ctx: &CallContext, a: i32, b: i32) -> Result<i32, Status> {
        Ok(a + b)
    }

    async fn apply(
        &self,
        _ctx: &CallContext,
        op: calc::Op,
        a: f64,
        b: f64,
    ) -> Result<calc::Result, Status> {
        Ok(match op {
            calc::Op::Add => calc::Result::Value(a + b),
            calc::Op::Sub => calc::Result::Value(a - b),
        })
    }

    async fn name(&self, ctx: &CallContext, p: calc::Point) -> Result<String, Status> {
        Ok(format!("{} {} from {}", p.x, p.y, ctx.peer_addr()))
    }

    async fn ping(&self, _ctx: &CallContext) -> Result<(), Status> {
        Ok(())
    }

    async fn log(&self, _ctx: &CallContext, _line: String) -> Result<(), Status> {
        Ok(())
    }
}

fn assert_service<S: rpc_core::server::Service + Clone + std::fmt::Debug>(_: &S) {}

fn main() {
    let server = CalcServer::new(Impl);
    assert_service(&server);
    assert_eq!(calc::CALC_INTERFACE.name, "Calc");
    assert_eq!(calc::CALC_INTERFACE.procedures.len(), 5);
    let (channel, _listener) = rpc_core::transport::memory::endpoint(4);
    let client = CalcClient::new(channel.clone()).with_options(rpc_core::CallOptions::new());
    let _ = format!("{client:?}");
    let _future = client.add(1, 2);
    let blocking = CalcBlockingClient::new(channel).unwrap();
    let _ = format!("{blocking:?}");
}
