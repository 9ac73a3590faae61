//! Implementations of gRPC's public example services, served by the stubs that
//! `rpc_codegen::proto` generated from their `.proto` files (docs/PROTO.md):
//! [`GreeterService`] (`helloworld.Greeter`), [`HealthService`] (`grpc.health.v1.Health`,
//! unary `Check`) and [`RouteGuideService`] (`routeguide.RouteGuide`, unary `GetFeature`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use rpc_core::{CallContext, Status};

use crate::health::health_check_response::ServingStatus;
use crate::health::{Health, HealthCheckRequest, HealthCheckResponse};
use crate::helloworld::{Greeter, HelloReply, HelloRequest};
use crate::routeguide::{Feature, Point, RouteGuide};

/// Application error codes of these services: gRPC's status codes, carried as
/// [`Status::Application`] codes.
pub mod codes {
    /// gRPC's `NOT_FOUND`: `Health.Check` of a service the server does not know.
    pub const NOT_FOUND: i32 = 5;
}

/// `helloworld.Greeter`: answers `Hello {name}`.
#[derive(Debug, Default, Clone, Copy)]
pub struct GreeterService;

impl Greeter for GreeterService {
    async fn say_hello(
        &self,
        _ctx: &CallContext,
        request: HelloRequest,
    ) -> Result<HelloReply, Status> {
        Ok(HelloReply {
            message: format!("Hello {}", request.name),
        })
    }
}

/// `grpc.health.v1.Health`: a settable serving status per service name; the empty
/// name stands for the server as a whole, and is `SERVING` from the start.
#[derive(Debug)]
pub struct HealthService {
    statuses: Mutex<HashMap<String, ServingStatus>>,
}

impl Default for HealthService {
    fn default() -> Self {
        HealthService::new()
    }
}

impl HealthService {
    /// A health service that knows only the server itself (`""`), as `SERVING`.
    pub fn new() -> Self {
        let statuses = HashMap::from([(String::new(), ServingStatus::Serving)]);
        HealthService {
            statuses: Mutex::new(statuses),
        }
    }

    /// Sets the serving status reported for `service`.
    pub fn set_status(&self, service: impl Into<String>, status: ServingStatus) {
        self.lock().insert(service.into(), status);
    }

    /// Forgets `service`: checking it then fails with [`codes::NOT_FOUND`].
    pub fn remove(&self, service: &str) {
        self.lock().remove(service);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, ServingStatus>> {
        self.statuses.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Health for HealthService {
    /// As the protocol says: the status of a known service; for an unknown one the call
    /// fails with `NOT_FOUND` (here the application error [`codes::NOT_FOUND`]).
    async fn check(
        &self,
        _ctx: &CallContext,
        request: HealthCheckRequest,
    ) -> Result<HealthCheckResponse, Status> {
        match self.lock().get(&request.service) {
            Some(&status) => Ok(HealthCheckResponse {
                status: status.into(),
            }),
            None => Err(Status::application(
                codes::NOT_FOUND,
                format!("unknown service `{}`", request.service),
            )),
        }
    }
}

/// `routeguide.RouteGuide`'s unary `GetFeature` over a fixed list of features.
#[derive(Debug, Clone)]
pub struct RouteGuideService {
    features: Vec<Feature>,
}

impl Default for RouteGuideService {
    fn default() -> Self {
        RouteGuideService::with_sample_features()
    }
}

impl RouteGuideService {
    /// A route guide over `features`.
    pub fn new(features: Vec<Feature>) -> Self {
        RouteGuideService { features }
    }

    /// A route guide over a few features of gRPC's example database (New Jersey).
    pub fn with_sample_features() -> Self {
        let feature = |name: &str, latitude, longitude| Feature {
            name: name.to_owned(),
            location: Some(Point {
                latitude,
                longitude,
            }),
        };
        RouteGuideService::new(vec![
            feature(
                "Patriots Path, Mendham, NJ 07945, USA",
                407_838_351,
                -746_143_763,
            ),
            feature(
                "101 New Jersey 10, Whippany, NJ 07981, USA",
                408_122_808,
                -743_999_179,
            ),
            feature("U.S. 6, Shohola, PA 18458, USA", 413_628_156, -749_015_468),
        ])
    }
}

impl RouteGuide for RouteGuideService {
    /// The feature at `point`, or a feature with an empty name there.
    async fn get_feature(&self, _ctx: &CallContext, point: Point) -> Result<Feature, Status> {
        let found = self
            .features
            .iter()
            .find(|f| f.location.as_ref() == Some(&point));
        Ok(found.cloned().unwrap_or(Feature {
            name: String::new(),
            location: Some(point),
        }))
    }
}
