//! The server's per-call `rpc.serve` span and its refusal events, seen by a capturing
//! subscriber: the span's fields (interface, procedure, ids, peer, semantics), the
//! outcome and handler time recorded on it, one `call refused` event per refusal with
//! its status, and the duplicate events of the reply cache. Background tasks have their
//! own root spans.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use examples::calc::{CalcServer, CALC_INTERFACE};
use examples::calc_service::CalcService;
use rpc_core::frame::{Frame, FrameHeader, FrameKind, Semantics};
use rpc_core::server::ReplyCacheConfig;
use rpc_core::transport::{memory, Channel, FrameReceiver};
use rpc_core::Server;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// A span as captured: its name, fields, and its parent's name.
#[derive(Debug, Clone, Default)]
struct SpanRecord {
    name: String,
    fields: HashMap<String, String>,
    parent: Option<String>,
}

/// An event as captured: its message and fields, and the span it belongs to (by
/// creation index).
#[derive(Debug, Clone)]
struct EventRecord {
    fields: HashMap<String, String>,
    span: Option<usize>,
}

/// Spans in creation order (the subscriber reuses ids of closed spans, so they are
/// indexed by creation, with a map from the live ids).
#[derive(Default)]
struct Captured {
    spans: Vec<SpanRecord>,
    live: HashMap<u64, usize>,
    events: Vec<EventRecord>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Captured>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut record = SpanRecord {
            name: attrs.metadata().name().to_owned(),
            ..SpanRecord::default()
        };
        attrs.record(&mut Fields(&mut record.fields));
        record.parent = ctx
            .span(id)
            .and_then(|s| s.parent())
            .map(|p| p.name().to_owned());
        let mut c = self.0.lock().unwrap();
        c.spans.push(record);
        let index = c.spans.len() - 1;
        c.live.insert(id.into_u64(), index);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut c = self.0.lock().unwrap();
        if let Some(&index) = c.live.get(&id.into_u64()) {
            values.record(&mut Fields(&mut c.spans[index].fields));
        }
    }
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let mut c = self.0.lock().unwrap();
        let span = ctx
            .event_span(event)
            .and_then(|s| c.live.get(&s.id().into_u64()).copied());
        c.events.push(EventRecord { fields, span });
    }
}

impl Capture {
    /// The `rpc.serve` spans, in creation order, with their creation index.
    fn serve_spans(&self) -> Vec<(usize, SpanRecord)> {
        let c = self.0.lock().unwrap();
        c.spans
            .iter()
            .enumerate()
            .filter(|(_, s)| s.name == "rpc.serve")
            .map(|(i, s)| (i, s.clone()))
            .collect()
    }
    fn events_of(&self, span: usize) -> Vec<EventRecord> {
        let c = self.0.lock().unwrap();
        c.events
            .iter()
            .filter(|e| e.span == Some(span))
            .cloned()
            .collect()
    }
}

fn frame(call_id: u64, iface: u32, version: u32, procedure: u32, args: &[u8]) -> Frame {
    let mut header = FrameHeader::call(0xC1, call_id, iface, version, procedure);
    header.set_semantics(Semantics::AtMostOnce);
    Frame::new(header, Bytes::copy_from_slice(args))
}

/// Two XDR ints: the arguments of `add`.
const TWO_INTS: [u8; 8] = [0, 0, 0, 2, 0, 0, 0, 3];

#[tokio::test]
async fn each_call_has_a_span_with_its_outcome_and_each_refusal_an_event() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let (channel, listener) = memory::endpoint(64);
    let server = Server::builder()
        .reply_cache(Some(ReplyCacheConfig::default()))
        .add_service(CalcServer::new(CalcService::new()))
        .serve(listener)
        .expect("serve");
    let mut conn = channel.connect().await.expect("connect");
    let calc = CALC_INTERFACE.id;
    let mut deadline_passed = frame(5, calc, 1, 1, &TWO_INTS);
    deadline_passed.header.deadline_us = 0;
    let mut once = frame(6, calc, 1, 1, &TWO_INTS);
    once.header.set_semantics(Semantics::ExactlyOnce);
    let frames = [
        frame(1, calc, 1, 1, &TWO_INTS),     // ok
        frame(2, 0x0BAD_0BAD, 1, 1, &[]),    // UnknownInterface
        frame(3, calc, 9, 1, &TWO_INTS),     // VersionMismatch
        frame(4, calc, 1, 999, &[]),         // UnknownProcedure
        deadline_passed,                     // DeadlineExceeded
        once.clone(),                        // ok, exactly-once
        once,                                // the duplicate: from the cache
        frame(8, calc, 1, 1, &[0, 0, 0, 2]), // BadArguments (one int short)
    ];
    for f in frames {
        conn.sender.send(f).await.expect("send");
        let answer = conn
            .receiver
            .recv()
            .await
            .expect("recv")
            .expect("an answer");
        assert!(matches!(
            answer.header.kind,
            FrameKind::Reply | FrameKind::Status
        ));
    }
    server.shutdown().await;

    let spans = capture.serve_spans();
    let by_call = |id: u64| -> Vec<(usize, SpanRecord)> {
        spans
            .iter()
            .filter(|(_, s)| s.fields.get("call_id") == Some(&id.to_string()))
            .cloned()
            .collect()
    };
    // The successful call: every field, the outcome, the handler's time.
    let (_, ok) = &by_call(1)[0];
    assert_eq!(ok.fields["interface"], "Calc");
    assert_eq!(ok.fields["interface_id"], calc.to_string());
    assert_eq!(ok.fields["version"], "1");
    assert_eq!(ok.fields["procedure"], "1");
    assert_eq!(ok.fields["client_id"], 0xC1.to_string());
    assert_eq!(ok.fields["semantics"], "at-most-once");
    assert!(ok.fields["peer"].starts_with("127.0.0.1:"), "{ok:?}");
    assert_eq!(ok.fields["outcome"], "ok");
    assert!(ok.fields.contains_key("handler_us"), "{ok:?}");
    assert_eq!(ok.parent.as_deref(), Some("rpc.connection"));

    // Each refusal: the outcome on the span and one `call refused` event with the status.
    for (call_id, status) in [
        (2, "UnknownInterface"),
        (3, "VersionMismatch"),
        (4, "UnknownProcedure"),
        (5, "DeadlineExceeded"),
        (8, "BadArguments"),
    ] {
        let found = by_call(call_id);
        assert_eq!(found.len(), 1, "call {call_id}: {found:?}");
        let (id, span) = &found[0];
        assert_eq!(span.fields["outcome"], status, "call {call_id}: {span:?}");
        let events = capture.events_of(*id);
        if status == "BadArguments" {
            // Found by the handler's decoder: the handler part ran, nothing was refused
            // before it.
            assert!(events.is_empty(), "{events:?}");
            continue;
        }
        assert_eq!(events.len(), 1, "call {call_id}: {events:?}");
        assert_eq!(events[0].fields["message"], "call refused");
        assert_eq!(events[0].fields["status"], status);
    }

    // The exactly-once call and its duplicate: the second is answered from the cache.
    let twice = by_call(6);
    assert_eq!(twice.len(), 2, "{twice:?}");
    let outcomes: Vec<&str> = twice
        .iter()
        .map(|(_, s)| s.fields["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["ok", "cached"]);
    let events = capture.events_of(twice[1].0);
    assert_eq!(
        events[0].fields["message"],
        "duplicate answered from the reply cache"
    );
    assert_eq!(twice[0].1.fields["semantics"], "exactly-once");

    // Background tasks are roots of their own, not children of a call.
    let c = capture.0.lock().unwrap();
    for name in ["rpc.connection", "rpc.accept"] {
        let s = c
            .spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(s.parent, None, "{name}: {s:?}");
    }
}
