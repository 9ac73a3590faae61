//! etcd as the name service (feature `etcd`), over etcd's v3 JSON gateway.
//!
//! Instances register under `{prefix}/{name}/{version}/{endpoint}` (prefix
//! [`DEFAULT_PREFIX`] unless configured), the value a JSON object
//! `{"endpoint": "udp://host:port", "metadata": {...}}`, attached to a lease that an
//! [`EtcdRegistration`] keeps alive: when the instance stops (or loses etcd for longer
//! than the TTL), the key disappears with its lease. An [`EtcdResolver`] reads the
//! `{prefix}/{name}/{version}/` range and then follows it with an etcd watch.
//!
//! The gateway is spoken with a small HTTP/1.1 client on a plain tokio `TcpStream` (one
//! connection per request, `Connection: close`): bodies by `Content-Length`, chunked, or
//! until close; bounded sizes; every exchange under a timeout. TLS and authentication are
//! not supported: use a local or otherwise trusted etcd endpoint (`http://host:port`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Endpoint, ResolveError, Resolver};

/// The key prefix services are registered under by default.
pub const DEFAULT_PREFIX: &str = "/rpc/services";

/// How long one request to etcd may take by default (connect, send, whole answer).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a resolver's watch stream may stay silent by default before the resolver
/// reads the range again and starts a new watch (guards against half-open connections).
pub const DEFAULT_WATCH_IDLE: Duration = Duration::from_secs(60);

/// Longest wait between a resolver's attempts to re-read and re-watch after an error.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Largest response head (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Largest response body, and largest single message on a watch stream.
const MAX_BODY: usize = 32 * 1024 * 1024;
/// Longest chunk-size or trailer line.
const MAX_LINE: usize = 4 * 1024;

/// Where etcd is and how keys are laid out; shared by [`EtcdRegistration`] and
/// [`EtcdResolver`].
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    http: Http,
    prefix: String,
    watch_idle: Duration,
}

impl EtcdConfig {
    /// etcd at `etcd_url` (`http://host:port`, or just `host:port`), with the default
    /// prefix and timeouts.
    pub fn new(etcd_url: &str) -> Result<Self, ResolveError> {
        Ok(EtcdConfig {
            http: Http::parse(etcd_url)?,
            prefix: DEFAULT_PREFIX.to_owned(),
            watch_idle: DEFAULT_WATCH_IDLE,
        })
    }

    /// Sets the key prefix (a trailing `/` is ignored).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        let prefix: String = prefix.into();
        self.prefix = prefix.trim_end_matches('/').to_owned();
        self
    }

    /// Sets how long one request may take (at least 10 ms).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.http.timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// Sets how long a watch stream may stay silent before it is replaced (at least
    /// 100 ms).
    pub fn watch_idle(mut self, idle: Duration) -> Self {
        self.watch_idle = idle.max(Duration::from_millis(100));
        self
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}/{name}/{version}/`: where the instances of one service version live.
    fn service_dir(&self, name: &str, version: u32) -> Result<String, ResolveError> {
        if name.is_empty() || name.contains('/') {
            return Err(ResolveError::Service(format!(
                "etcd: invalid service name {name:?} (must be non-empty and contain no '/')"
            )));
        }
        Ok(format!("{}/{name}/{version}/", self.prefix))
    }

    async fn grant(&self, ttl_secs: i64) -> Result<(i64, i64), ResolveError> {
        let answer = self
            .http
            .call("/v3/lease/grant", &json!({ "TTL": ttl_secs.to_string() }))
            .await?;
        let first = single(&answer, "/v3/lease/grant")?;
        if let Some(err) = first.get("error").and_then(Value::as_str) {
            if !err.is_empty() {
                return Err(ResolveError::Service(format!(
                    "etcd: lease grant refused: {err}"
                )));
            }
        }
        let id = int(first.get("ID")).filter(|id| *id != 0).ok_or_else(|| {
            ResolveError::Service(format!("etcd: lease grant answered without an ID: {first}"))
        })?;
        let ttl = int(first.get("TTL")).unwrap_or(ttl_secs).max(1);
        Ok((id, ttl))
    }

    /// Renews `lease`; `Ok(None)` when etcd no longer knows it.
    async fn keepalive(&self, lease: i64) -> Result<Option<i64>, ResolveError> {
        let answer = self
            .http
            .call("/v3/lease/keepalive", &json!({ "ID": lease.to_string() }))
            .await?;
        let first = single(&answer, "/v3/lease/keepalive")?;
        let result = first.get("result").unwrap_or(first);
        // An expired or unknown lease comes back with TTL 0 (omitted in JSON).
        Ok(int(result.get("TTL")).filter(|ttl| *ttl > 0))
    }

    async fn revoke(&self, lease: i64) -> Result<(), ResolveError> {
        match self
            .http
            .post_json("/v3/lease/revoke", &json!({ "ID": lease.to_string() }))
            .await
        {
            Ok(_) => Ok(()),
            // Already gone (expired): nothing to revoke.
            Err(HttpError::Status { status: 404, .. }) => Ok(()),
            Err(e) => Err(e.context(&self.http, "/v3/lease/revoke")),
        }
    }

    async fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<(), ResolveError> {
        let body = json!({
            "key": B64.encode(key),
            "value": B64.encode(value),
            "lease": lease.to_string(),
        });
        let answer = self.http.call("/v3/kv/put", &body).await?;
        single(&answer, "/v3/kv/put")?;
        Ok(())
    }

    /// Every instance under `dir`, and the store revision the answer reflects.
    async fn range(&self, dir: &str) -> Result<(HashMap<Vec<u8>, Endpoint>, i64), ResolveError> {
        let body = json!({
            "key": B64.encode(dir),
            "range_end": B64.encode(prefix_end(dir.as_bytes())),
        });
        let answer = self.http.call("/v3/kv/range", &body).await?;
        let first = single(&answer, "/v3/kv/range")?;
        let revision = first
            .get("header")
            .and_then(|h| int(h.get("revision")))
            .ok_or_else(|| {
                ResolveError::Service(format!("etcd: range answered without a revision: {first}"))
            })?;
        let mut set = HashMap::new();
        for kv in first
            .get("kvs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(key) = b64_field(kv, "key") else {
                continue;
            };
            let value = b64_field(kv, "value").unwrap_or_default();
            if let Some(endpoint) = decode_instance(dir, &key, &value) {
                set.insert(key, endpoint);
            }
        }
        Ok((set, revision))
    }
}

/// The first JSON value of an answer (a streaming method answers with a sequence),
/// checking it for an in-band error.
fn single<'a>(answer: &'a [Value], what: &str) -> Result<&'a Value, ResolveError> {
    let first = answer
        .first()
        .ok_or_else(|| ResolveError::Service(format!("etcd {what}: empty answer")))?;
    if let Some(err) = first.get("error") {
        return Err(ResolveError::Service(format!(
            "etcd {what}: {}",
            error_message(err)
        )));
    }
    Ok(first)
}

fn error_message(err: &Value) -> String {
    match err {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| err.to_string()),
        other => other.to_string(),
    }
}

/// An int64 from the gateway: a JSON string (as protobuf's JSON mapping writes them) or
/// number.
fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn b64_field(obj: &Value, field: &str) -> Option<Vec<u8>> {
    B64.decode(obj.get(field)?.as_str()?).ok()
}

/// The smallest key after every key starting with `prefix` (etcd's `range_end` for a
/// prefix query): the last byte below 0xff incremented, the rest dropped.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): every key from `prefix` on.
    vec![0]
}

/// An instance from its key and value: the value's `endpoint` and `metadata`, or, for a
/// value that is not our JSON, the endpoint spelled by the key's last part.
fn decode_instance(dir: &str, key: &[u8], value: &[u8]) -> Option<Endpoint> {
    #[derive(Default)]
    struct Parsed {
        endpoint: Option<String>,
        metadata: BTreeMap<String, String>,
    }
    let mut parsed = Parsed::default();
    if let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(value) {
        parsed.endpoint = obj
            .get("endpoint")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(Value::Object(meta)) = obj.get("metadata") {
            for (k, v) in meta {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                parsed.metadata.insert(k.clone(), v);
            }
        }
    }
    let text = match parsed.endpoint {
        Some(e) => e,
        None => std::str::from_utf8(key).ok()?.strip_prefix(dir)?.to_owned(),
    };
    match text.parse::<Endpoint>() {
        Ok(mut endpoint) => {
            endpoint.metadata = parsed.metadata;
            Some(endpoint)
        }
        Err(e) => {
            tracing::debug!(key = %String::from_utf8_lossy(key), error = %e, "etcd: ignoring a malformed instance");
            None
        }
    }
}

/// One service instance registered in etcd, kept alive by a background task.
///
/// [`deregister`](EtcdRegistration::deregister) removes the key at once (by revoking its
/// lease); dropping the handle just stops the keepalives, so the key expires with the
/// lease, within its TTL.
#[derive(Debug)]
pub struct EtcdRegistration {
    config: EtcdConfig,
    key: String,
    lease: Arc<AtomicI64>,
    task: JoinHandle<()>,
}

impl EtcdRegistration {
    /// Registers `endpoint` as an instance of `name` (`version`) in etcd at `etcd_url`
    /// (under [`DEFAULT_PREFIX`]), with `metadata` (added to the endpoint's own) and a
    /// lease of `ttl` (whole seconds, at least 1; etcd may grant more). Returns once the
    /// key is written. Must be called within a tokio runtime.
    pub async fn start(
        etcd_url: &str,
        name: &str,
        version: u32,
        endpoint: Endpoint,
        metadata: BTreeMap<String, String>,
        ttl: Duration,
    ) -> Result<Self, ResolveError> {
        let config = EtcdConfig::new(etcd_url)?;
        EtcdRegistration::start_with(config, name, version, endpoint, metadata, ttl).await
    }

    /// [`start`](EtcdRegistration::start) with a configuration (prefix, timeouts).
    pub async fn start_with(
        config: EtcdConfig,
        name: &str,
        version: u32,
        endpoint: Endpoint,
        metadata: BTreeMap<String, String>,
        ttl: Duration,
    ) -> Result<Self, ResolveError> {
        let dir = config.service_dir(name, version)?;
        let addr = endpoint.to_string();
        let key = format!("{dir}{addr}");
        let mut all_metadata = endpoint.metadata.clone();
        all_metadata.extend(metadata);
        let value = serde_json::to_vec(&json!({ "endpoint": addr, "metadata": all_metadata }))
            .map_err(|e| ResolveError::Service(format!("etcd: encoding the value: {e}")))?;
        let ttl_secs = i64::try_from(
            ttl.as_secs()
                .saturating_add(u64::from(ttl.subsec_nanos() > 0)),
        )
        .unwrap_or(i64::MAX)
        .max(1);

        let (lease, granted) = config.grant(ttl_secs).await?;
        if let Err(e) = config.put(&key, &value, lease).await {
            // Do not leave the lease behind.
            let _ = config.revoke(lease).await;
            return Err(e);
        }
        let shared = Arc::new(AtomicI64::new(lease));
        let task = tokio::spawn(keep_alive(
            config.clone(),
            key.clone(),
            value,
            ttl_secs,
            granted,
            shared.clone(),
        ));
        tracing::debug!(%key, lease, ttl = granted, "etcd: registered");
        Ok(EtcdRegistration {
            config,
            key,
            lease: shared,
            task,
        })
    }

    /// The key this instance is registered under.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The lease the key is attached to now (it changes when a lost lease is replaced).
    pub fn lease_id(&self) -> i64 {
        self.lease.load(Ordering::SeqCst)
    }

    /// Stops the keepalives and revokes the lease, which deletes the key at once. If etcd
    /// cannot be reached, the error is returned and the key expires with its lease.
    pub async fn deregister(mut self) -> Result<(), ResolveError> {
        self.task.abort();
        // Wait for the task to be gone so that it cannot write the key again.
        let _ = (&mut self.task).await;
        let lease = self.lease.load(Ordering::SeqCst);
        self.config.revoke(lease).await?;
        tracing::debug!(key = %self.key, lease, "etcd: deregistered");
        Ok(())
    }
}

impl Drop for EtcdRegistration {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Renews the lease every third of its TTL; when etcd has lost it (expired while etcd
/// was unreachable, or revoked), grants a new one and writes the key again.
async fn keep_alive(
    config: EtcdConfig,
    key: String,
    value: Vec<u8>,
    ttl_secs: i64,
    mut granted: i64,
    lease: Arc<AtomicI64>,
) {
    let mut lost = false;
    loop {
        let period = Duration::from_millis((granted.max(1) as u64).saturating_mul(1000) / 3)
            .max(Duration::from_millis(300));
        tokio::time::sleep(period).await;
        if !lost {
            let current = lease.load(Ordering::SeqCst);
            match config.keepalive(current).await {
                Ok(Some(ttl)) => {
                    granted = ttl;
                    continue;
                }
                Ok(None) => {
                    tracing::info!(%key, lease = current, "etcd: lease lost; registering again");
                    lost = true;
                }
                Err(e) => {
                    // Try again next period; if the lease expires meanwhile, the next
                    // keepalive says so.
                    tracing::debug!(%key, error = %e, "etcd: keepalive failed");
                    continue;
                }
            }
        }
        match config.grant(ttl_secs).await {
            Ok((new_lease, ttl)) => {
                // Published before the put: a deregister that aborts us mid-put revokes
                // the lease the key may be written with.
                lease.store(new_lease, Ordering::SeqCst);
                granted = ttl;
                match config.put(&key, &value, new_lease).await {
                    Ok(()) => {
                        lost = false;
                        tracing::info!(%key, lease = new_lease, "etcd: registered again");
                    }
                    Err(e) => {
                        tracing::debug!(%key, error = %e, "etcd: writing the key again failed");
                        let _ = config.revoke(new_lease).await;
                    }
                }
            }
            Err(e) => tracing::debug!(%key, error = %e, "etcd: lease grant failed"),
        }
    }
}

/// A [`Resolver`] that reads instances from etcd and follows them with a watch.
///
/// The first set comes from a range read (an empty set when no instance is registered
/// yet: the receiver changes when one appears). Then a watch from the next revision adds
/// and removes instances as they are written and deleted. When the watch stream breaks
/// (etcd restarted, connection lost, revision compacted), the resolver waits a little,
/// reads the range again and watches again, keeping the last known set meanwhile.
#[derive(Debug, Clone)]
pub struct EtcdResolver {
    config: EtcdConfig,
}

impl EtcdResolver {
    /// A resolver for etcd at `etcd_url` (`http://host:port`), under [`DEFAULT_PREFIX`].
    pub fn new(etcd_url: &str) -> Result<Self, ResolveError> {
        Ok(EtcdResolver {
            config: EtcdConfig::new(etcd_url)?,
        })
    }

    /// A resolver with a configuration (prefix, timeouts).
    pub fn with_config(config: EtcdConfig) -> Self {
        EtcdResolver { config }
    }
}

impl Resolver for EtcdResolver {
    async fn watch(
        &self,
        name: &str,
        version: u32,
    ) -> Result<watch::Receiver<Vec<Endpoint>>, ResolveError> {
        let dir = self.config.service_dir(name, version)?;
        let (set, revision) = self.config.range(&dir).await?;
        let (tx, rx) = watch::channel(sorted(&set));
        tokio::spawn(follow(self.config.clone(), dir, set, revision, tx));
        Ok(rx)
    }
}

fn sorted(set: &HashMap<Vec<u8>, Endpoint>) -> Vec<Endpoint> {
    let mut v: Vec<Endpoint> = set.values().cloned().collect();
    v.sort();
    v.dedup();
    v
}

fn publish(tx: &watch::Sender<Vec<Endpoint>>, set: &HashMap<Vec<u8>, Endpoint>) {
    let next = sorted(set);
    tx.send_if_modified(|cur| {
        let changed = *cur != next;
        if changed {
            *cur = next;
        }
        changed
    });
}

/// Watches `dir` from `revision + 1`; on any break, backs off, reads the range again and
/// watches again. Returns when every receiver is gone.
async fn follow(
    config: EtcdConfig,
    dir: String,
    mut set: HashMap<Vec<u8>, Endpoint>,
    mut revision: i64,
    tx: watch::Sender<Vec<Endpoint>>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let outcome = tokio::select! {
            () = tx.closed() => return,
            r = watch_once(&config, &dir, &mut set, &mut revision, &tx) => r,
        };
        match outcome {
            Ok(()) => tracing::debug!(%dir, "etcd: watch stream ended; watching again"),
            Err(e) => tracing::debug!(%dir, error = %e, "etcd: watch failed; watching again"),
        }
        loop {
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            match config.range(&dir).await {
                Ok((fresh, rev)) => {
                    set = fresh;
                    revision = rev;
                    publish(&tx, &set);
                    backoff = MIN_BACKOFF;
                    break;
                }
                // Keep the last known set while etcd is away.
                Err(e) => tracing::debug!(%dir, error = %e, "etcd: range failed; retrying"),
            }
        }
    }
}

/// One watch stream: applies its events to `set` (publishing each change) until the
/// stream ends or fails.
async fn watch_once(
    config: &EtcdConfig,
    dir: &str,
    set: &mut HashMap<Vec<u8>, Endpoint>,
    revision: &mut i64,
    tx: &watch::Sender<Vec<Endpoint>>,
) -> Result<(), ResolveError> {
    let body = json!({
        "create_request": {
            "key": B64.encode(dir),
            "range_end": B64.encode(prefix_end(dir.as_bytes())),
            "start_revision": (*revision + 1).to_string(),
        }
    });
    let mut stream = config.http.open("/v3/watch", &body).await?;
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let chunk = match tokio::time::timeout(config.watch_idle, stream.next()).await {
            Err(_) => {
                return Err(ResolveError::Service(format!(
                    "etcd /v3/watch: silent for {:?}",
                    config.watch_idle
                )))
            }
            Ok(r) => r.map_err(|e| e.context(&config.http, "/v3/watch"))?,
        };
        let Some(chunk) = chunk else {
            return Ok(());
        };
        pending.extend_from_slice(&chunk);
        let mut values = serde_json::Deserializer::from_slice(&pending).into_iter::<Value>();
        let mut consumed = 0;
        loop {
            match values.next() {
                Some(Ok(message)) => {
                    consumed = values.byte_offset();
                    apply_watch_message(dir, &message, set, revision)?;
                    publish(tx, set);
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    return Err(ResolveError::Service(format!(
                        "etcd /v3/watch: malformed message: {e}"
                    )))
                }
                None => {
                    consumed = pending.len();
                    break;
                }
            }
        }
        pending.drain(..consumed);
        if pending.len() > MAX_BODY {
            return Err(ResolveError::Service(
                "etcd /v3/watch: message too large".to_owned(),
            ));
        }
    }
}

fn apply_watch_message(
    dir: &str,
    message: &Value,
    set: &mut HashMap<Vec<u8>, Endpoint>,
    revision: &mut i64,
) -> Result<(), ResolveError> {
    if let Some(err) = message.get("error") {
        return Err(ResolveError::Service(format!(
            "etcd /v3/watch: {}",
            error_message(err)
        )));
    }
    let result = message.get("result").unwrap_or(message);
    if let Some(compacted) = int(result.get("compact_revision")).filter(|r| *r > 0) {
        return Err(ResolveError::Service(format!(
            "etcd /v3/watch: revision {} compacted (now {compacted})",
            *revision + 1
        )));
    }
    if result.get("canceled").and_then(Value::as_bool) == Some(true) {
        let reason = result
            .get("cancel_reason")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        return Err(ResolveError::Service(format!(
            "etcd /v3/watch: canceled: {reason}"
        )));
    }
    for event in result
        .get("events")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(kv) = event.get("kv") else {
            continue;
        };
        let Some(key) = b64_field(kv, "key") else {
            continue;
        };
        if let Some(rev) = int(kv.get("mod_revision")) {
            *revision = (*revision).max(rev);
        }
        // PUT is the enum's zero value, so it is usually omitted.
        match event.get("type").and_then(Value::as_str) {
            Some("DELETE") => {
                set.remove(&key);
            }
            _ => {
                let value = b64_field(kv, "value").unwrap_or_default();
                match decode_instance(dir, &key, &value) {
                    Some(endpoint) => {
                        set.insert(key, endpoint);
                    }
                    None => {
                        set.remove(&key);
                    }
                }
            }
        }
    }
    if let Some(rev) = result.get("header").and_then(|h| int(h.get("revision"))) {
        *revision = (*revision).max(rev);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// A small HTTP/1.1 client: enough for etcd's JSON gateway.

#[derive(Debug, Clone)]
struct Http {
    /// `host:port` to connect to and to send as `Host`.
    authority: String,
    timeout: Duration,
}

#[derive(Debug)]
enum HttpError {
    Io(std::io::Error),
    Timeout,
    Protocol(String),
    Status { status: u16, message: String },
}

impl HttpError {
    fn context(self, http: &Http, path: &str) -> ResolveError {
        let what = format!("etcd http://{}{path}", http.authority);
        ResolveError::Service(match self {
            HttpError::Io(e) => format!("{what}: {e}"),
            HttpError::Timeout => format!("{what}: no answer within {:?}", http.timeout),
            HttpError::Protocol(m) => format!("{what}: bad HTTP answer: {m}"),
            HttpError::Status { status, message } => format!("{what}: HTTP {status}: {message}"),
        })
    }
}

impl From<std::io::Error> for HttpError {
    fn from(e: std::io::Error) -> Self {
        HttpError::Io(e)
    }
}

impl Http {
    fn parse(url: &str) -> Result<Self, ResolveError> {
        let bad = |why: &str| ResolveError::Service(format!("etcd URL {url:?}: {why}"));
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some(("https", _)) => return Err(bad("https is not supported; use http://")),
            Some(_) => return Err(bad("expected http://host:port")),
            None => url,
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') || authority.contains('@') {
            return Err(bad("expected http://host:port (no path or user)"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let port: u16 = match port {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None => 2379,
        };
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Http {
            authority,
            timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// POSTs `body` to `path` and reads the whole answer: the sequence of JSON values in
    /// its body (one for a unary method).
    async fn post_json(&self, path: &str, body: &Value) -> Result<Vec<Value>, HttpError> {
        let exchange = async {
            let mut stream = self.send(path, body).await?;
            let mut data = Vec::new();
            while let Some(chunk) = stream.next().await? {
                if data.len() + chunk.len() > MAX_BODY {
                    return Err(HttpError::Protocol(format!(
                        "body larger than {MAX_BODY} bytes"
                    )));
                }
                data.extend_from_slice(&chunk);
            }
            let mut values = Vec::new();
            for v in serde_json::Deserializer::from_slice(&data).into_iter::<Value>() {
                values.push(v.map_err(|e| HttpError::Protocol(format!("body is not JSON: {e}")))?);
            }
            if stream.status != 200 {
                let message = values
                    .first()
                    .map(|v| error_message(v.get("error").unwrap_or(v)))
                    .unwrap_or_else(|| String::from_utf8_lossy(&data).into_owned());
                return Err(HttpError::Status {
                    status: stream.status,
                    message,
                });
            }
            Ok(values)
        };
        let result = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout),
        };
        result
    }

    /// [`Http::post_json`] with errors described for the caller.
    async fn call(&self, path: &str, body: &Value) -> Result<Vec<Value>, ResolveError> {
        self.post_json(path, body)
            .await
            .map_err(|e| e.context(self, path))
    }

    /// POSTs `body` to `path` and returns the answer's body as a stream, once a 200 head
    /// has arrived (within the request timeout).
    async fn open(&self, path: &str, body: &Value) -> Result<Body, ResolveError> {
        let stream = match tokio::time::timeout(self.timeout, self.send(path, body)).await {
            Ok(r) => r.map_err(|e| e.context(self, path))?,
            Err(_) => return Err(HttpError::Timeout.context(self, path)),
        };
        if stream.status != 200 {
            return Err(HttpError::Status {
                status: stream.status,
                message: "unexpected status".to_owned(),
            }
            .context(self, path));
        }
        Ok(stream)
    }

    /// Connects, sends the request, and reads the answer's head.
    async fn send(&self, path: &str, body: &Value) -> Result<Body, HttpError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| HttpError::Protocol(format!("encoding the request: {e}")))?;
        let mut tcp = TcpStream::connect(self.authority.as_str()).await?;
        let _ = tcp.set_nodelay(true);
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Accept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.authority,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        tcp.write_all(&request).await?;
        tcp.flush().await?;
        let mut reader = Reader {
            tcp,
            buf: Vec::with_capacity(8 * 1024),
            start: 0,
        };
        loop {
            let head = reader.head().await?;
            let parsed = parse_head(&head)?;
            // Interim answers (100 Continue) are followed by the real one.
            if (100..200).contains(&parsed.status) {
                continue;
            }
            return Ok(Body {
                reader,
                status: parsed.status,
                framing: parsed.framing,
            });
        }
    }
}

struct Head {
    status: u16,
    framing: Framing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
    Done,
}

fn parse_head(head: &[u8]) -> Result<Head, HttpError> {
    let text = std::str::from_utf8(head)
        .map_err(|_| HttpError::Protocol("response head is not UTF-8".to_owned()))?;
    let mut lines = text
        .split("\r\n")
        .map(|l| l.strip_suffix('\r').unwrap_or(l));
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Protocol(format!(
            "bad status line {status_line:?}"
        )));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| HttpError::Protocol(format!("bad status line {status_line:?}")))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| HttpError::Protocol(format!("bad header line {line:?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| HttpError::Protocol(format!("bad Content-Length {value:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(HttpError::Protocol("conflicting Content-Length".to_owned()));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            if !chunked {
                return Err(HttpError::Protocol(format!(
                    "unsupported Transfer-Encoding {value:?}"
                )));
            }
        }
    }
    let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Done
    } else if chunked {
        // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3).
        Framing::Chunked
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err(HttpError::Protocol(format!(
                "Content-Length {n} above the limit {MAX_BODY}"
            )));
        }
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Head { status, framing })
}

/// Buffered reading from the connection.
struct Reader {
    tcp: TcpStream,
    buf: Vec<u8>,
    /// `buf[start..]` is not consumed yet.
    start: usize,
}

impl Reader {
    fn available(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Reads more from the connection; `false` at its end.
    async fn fill(&mut self) -> Result<bool, HttpError> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let mut tmp = [0u8; 16 * 1024];
        let n = self.tcp.read(&mut tmp).await?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n > 0)
    }

    fn consume(&mut self, n: usize) -> Vec<u8> {
        let out = self.buf[self.start..self.start + n].to_vec();
        self.start += n;
        out
    }

    /// The response head, up to and without the empty line.
    async fn head(&mut self) -> Result<Vec<u8>, HttpError> {
        loop {
            if let Some(at) = find(self.available(), b"\r\n\r\n") {
                let head = self.consume(at);
                self.start += 4;
                return Ok(head);
            }
            if self.available().len() > MAX_HEAD {
                return Err(HttpError::Protocol(format!(
                    "response head larger than {MAX_HEAD} bytes"
                )));
            }
            if !self.fill().await? {
                return Err(HttpError::Protocol(
                    "connection closed before the response head".to_owned(),
                ));
            }
        }
    }

    /// One line without its line end.
    async fn line(&mut self) -> Result<Vec<u8>, HttpError> {
        loop {
            if let Some(at) = self.available().iter().position(|b| *b == b'\n') {
                let mut line = self.consume(at);
                self.start += 1;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.available().len() > MAX_LINE {
                return Err(HttpError::Protocol("line too long in the body".to_owned()));
            }
            if !self.fill().await? {
                return Err(HttpError::Protocol(
                    "connection closed in the middle of the body".to_owned(),
                ));
            }
        }
    }

    /// Exactly `n` bytes.
    async fn exact(&mut self, n: usize) -> Result<Vec<u8>, HttpError> {
        while self.available().len() < n {
            if !self.fill().await? {
                return Err(HttpError::Protocol(
                    "connection closed in the middle of the body".to_owned(),
                ));
            }
        }
        Ok(self.consume(n))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A response body, read piece by piece.
struct Body {
    reader: Reader,
    status: u16,
    framing: Framing,
}

impl Body {
    /// The next piece of the body (a chunk, or what has arrived), `None` at its end.
    async fn next(&mut self) -> Result<Option<Vec<u8>>, HttpError> {
        match self.framing {
            Framing::Done => Ok(None),
            Framing::Length(0) => {
                self.framing = Framing::Done;
                Ok(None)
            }
            Framing::Length(left) => {
                if self.reader.available().is_empty() && !self.reader.fill().await? {
                    return Err(HttpError::Protocol(
                        "connection closed before Content-Length bytes".to_owned(),
                    ));
                }
                let n = self.reader.available().len().min(left);
                self.framing = Framing::Length(left - n);
                Ok(Some(self.reader.consume(n)))
            }
            Framing::UntilClose => {
                if self.reader.available().is_empty() && !self.reader.fill().await? {
                    self.framing = Framing::Done;
                    return Ok(None);
                }
                let n = self.reader.available().len();
                Ok(Some(self.reader.consume(n)))
            }
            Framing::Chunked => loop {
                let line = self.reader.line().await?;
                let line = std::str::from_utf8(&line)
                    .map_err(|_| HttpError::Protocol("chunk size is not text".to_owned()))?;
                let size = line.split(';').next().unwrap_or_default().trim();
                if size.is_empty() {
                    // Tolerate a stray empty line between chunks.
                    continue;
                }
                let size = usize::from_str_radix(size, 16)
                    .ok()
                    .filter(|s| *s <= MAX_BODY)
                    .ok_or_else(|| HttpError::Protocol(format!("bad chunk size {size:?}")))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    let mut trailers = 0;
                    while !self.reader.line().await?.is_empty() {
                        trailers += 1;
                        if trailers > 100 {
                            return Err(HttpError::Protocol("too many trailers".to_owned()));
                        }
                    }
                    self.framing = Framing::Done;
                    return Ok(None);
                }
                let data = self.reader.exact(size).await?;
                if !self.reader.line().await?.is_empty() {
                    return Err(HttpError::Protocol("chunk not followed by CRLF".to_owned()));
                }
                return Ok(Some(data));
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/rpc/calc/1/"), b"/rpc/calc/10".to_vec());
        assert_eq!(prefix_end(b"a\xff\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn urls_parse() {
        assert_eq!(
            Http::parse("http://127.0.0.1:2379").unwrap().authority,
            "127.0.0.1:2379"
        );
        assert_eq!(
            Http::parse("localhost/").unwrap().authority,
            "localhost:2379"
        );
        assert_eq!(Http::parse("http://[::1]:1").unwrap().authority, "[::1]:1");
        for bad in [
            "https://x:1",
            "ftp://x",
            "http://x:1/v3",
            "http://:1",
            "http://x:y",
        ] {
            assert!(Http::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn heads_parse() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\nX: y").unwrap();
        assert_eq!((h.status, h.framing), (200, Framing::Length(17)));
        let h = parse_head(b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked").unwrap();
        assert_eq!((h.status, h.framing), (404, Framing::Chunked));
        let h = parse_head(b"HTTP/1.0 200 OK").unwrap();
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(parse_head(b"SPDY 200").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999").is_err());
    }

    #[test]
    fn instances_decode_from_json_or_key() {
        let dir = "/rpc/services/calc/1/";
        let e = decode_instance(
            dir,
            b"/rpc/services/calc/1/udp://10.0.0.1:7",
            br#"{"endpoint":"udp://10.0.0.1:7","metadata":{"zone":"a","w":3}}"#,
        )
        .unwrap();
        assert_eq!(e.to_string(), "udp://10.0.0.1:7");
        assert_eq!(e.metadata["zone"], "a");
        assert_eq!(e.metadata["w"], "3");
        let e = decode_instance(dir, b"/rpc/services/calc/1/tcp://h:9", b"").unwrap();
        assert_eq!(e.to_string(), "tcp://h:9");
        assert!(decode_instance(dir, b"/rpc/services/calc/1/junk", b"x").is_none());
    }

    #[test]
    fn watch_messages_apply() {
        let dir = "/s/calc/1/";
        let key = B64.encode("/s/calc/1/udp://1.2.3.4:5");
        let mut set = HashMap::new();
        let mut rev = 1;
        let put = json!({"result": {"header": {"revision": "7"}, "events": [
            {"kv": {"key": key, "mod_revision": "7", "value": B64.encode("")}}]}});
        apply_watch_message(dir, &put, &mut set, &mut rev).unwrap();
        assert_eq!((set.len(), rev), (1, 7));
        let del = json!({"result": {"header": {"revision": "8"}, "events": [
            {"type": "DELETE", "kv": {"key": key, "mod_revision": "8"}}]}});
        apply_watch_message(dir, &del, &mut set, &mut rev).unwrap();
        assert_eq!((set.len(), rev), (0, 8));
        let compacted = json!({"result": {"compact_revision": "20", "canceled": true}});
        assert!(apply_watch_message(dir, &compacted, &mut set, &mut rev).is_err());
        let err = json!({"error": {"grpc_code": 14, "message": "unavailable"}});
        assert!(apply_watch_message(dir, &err, &mut set, &mut rev).is_err());
    }
}
