//! `CalcService`: the calculator's implementation (the server side of `proto/calc.idl`).

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use rpc_core::{CallContext, Status};

use crate::calc::{Calc, Op, Outcome, Point, Shape, Step};

/// Application error codes of the calculator.
pub mod codes {
    /// Integer overflow.
    pub const OVERFLOW: i32 = 1;
    /// Mean of an empty list.
    pub const EMPTY: i32 = 2;
}

/// Discriminant of an [`Outcome`] that failed (the IDL's `default` arm).
pub const OUTCOME_ERROR: i32 = 2;

/// The calculator. Counts the lines it was asked to log.
#[derive(Debug, Default)]
pub struct CalcService {
    logged: AtomicU64,
}

impl CalcService {
    /// A calculator with nothing logged yet.
    pub fn new() -> Self {
        CalcService::default()
    }

    /// Lines received through the oneway `log` procedure.
    pub fn logged(&self) -> u64 {
        self.logged.load(Ordering::Relaxed)
    }
}

fn apply_op(op: Op, a: f64, b: f64) -> Outcome {
    let value = match op {
        Op::Add => a + b,
        Op::Sub => a - b,
        Op::Mul => a * b,
        Op::Div if b == 0.0 => {
            return Outcome::Default {
                discriminant: OUTCOME_ERROR,
                value: "division by zero".to_owned(),
            }
        }
        Op::Div => a / b,
    };
    Outcome::Value(value)
}

impl Calc for CalcService {
    async fn add(&self, _ctx: &CallContext, a: i32, b: i32) -> Result<i32, Status> {
        a.checked_add(b).ok_or_else(|| {
            Status::application(codes::OVERFLOW, format!("{a} + {b} overflows an int"))
        })
    }

    async fn apply(&self, _ctx: &CallContext, op: Op, a: f64, b: f64) -> Result<Outcome, Status> {
        Ok(apply_op(op, a, b))
    }

    async fn mean(&self, _ctx: &CallContext, xs: Vec<f64>) -> Result<f64, Status> {
        if xs.is_empty() {
            return Err(Status::application(codes::EMPTY, "mean of no numbers"));
        }
        Ok(xs.iter().sum::<f64>() / xs.len() as f64)
    }

    async fn run(
        &self,
        _ctx: &CallContext,
        start: f64,
        steps: Vec<Step>,
    ) -> Result<Outcome, Status> {
        let mut acc = start;
        for step in steps {
            match apply_op(step.op, acc, step.operand) {
                Outcome::Value(v) => acc = v,
                failed => return Ok(failed),
            }
        }
        Ok(Outcome::Value(acc))
    }

    async fn echo(&self, _ctx: &CallContext, s: String) -> Result<String, Status> {
        Ok(s)
    }

    async fn put(&self, _ctx: &CallContext, blob: Bytes) -> Result<u32, Status> {
        Ok(crc32fast::hash(&blob))
    }

    async fn format_ip(&self, _ctx: &CallContext, addr: [u8; 4]) -> Result<String, Status> {
        Ok(std::net::Ipv4Addr::from(addr).to_string())
    }

    async fn scale(&self, _ctx: &CallContext, s: Shape, k: f32) -> Result<Shape, Status> {
        let scale = |p: Point| Point {
            x: (p.x as f32 * k).round() as i32,
            y: (p.y as f32 * k).round() as i32,
        };
        Ok(Shape {
            name: s.name,
            points: s.points.into_iter().map(scale).collect(),
            centre: s.centre.map(scale),
            op: Op::Mul,
        })
    }

    async fn nearest(
        &self,
        _ctx: &CallContext,
        points: Vec<Point>,
    ) -> Result<Option<Point>, Status> {
        Ok(points
            .into_iter()
            .min_by_key(|p| (p.x as i64).pow(2) + (p.y as i64).pow(2)))
    }

    async fn ping(&self, _ctx: &CallContext) -> Result<(), Status> {
        Ok(())
    }

    async fn log(&self, ctx: &CallContext, line: String) -> Result<(), Status> {
        self.logged.fetch_add(1, Ordering::Relaxed);
        tracing::info!(peer = %ctx.peer_addr(), %line, "log");
        Ok(())
    }

    fn add_inline(&self, _ctx: &CallContext, a: i32, b: i32) -> Result<i32, Status> {
        a.checked_add(b).ok_or_else(|| {
            Status::application(codes::OVERFLOW, format!("{a} + {b} overflows an int"))
        })
    }

    async fn echo_blob(&self, _ctx: &CallContext, blob: Bytes) -> Result<Bytes, Status> {
        Ok(blob)
    }
}

/// The seed interface's implementation: `func1(x) = x + 1`, `func2(a, b) = a * b`.
#[derive(Debug, Default)]
pub struct SeedService;

impl crate::seed::Seed for SeedService {
    async fn func1(&self, _ctx: &CallContext, arg1: i32) -> Result<i32, Status> {
        Ok(arg1.wrapping_add(1))
    }

    async fn func2(&self, _ctx: &CallContext, arg1: i32, arg2: i32) -> Result<i32, Status> {
        Ok(arg1.wrapping_mul(arg2))
    }
}
