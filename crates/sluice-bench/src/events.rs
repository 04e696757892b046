//! `sluice bench --suite events`: publish throughput and publish→delivery latency of the event
//! hub over real loopback HTTP, on both repositories, with NATS JetStream as the reference.
//!
//! For each repository (a SQLite file in a temp dir; then a fresh database on the PostgreSQL
//! server of `$SLUICE_TEST_PG`, default `postgres://postgres@127.0.0.1:5432`, dropped afterwards)
//! it starts, in this process, the hub server `sluice serve` runs ([`sluice_api::Hub::open`]:
//! repository, event hub over the repository's database with the in-process broker, service,
//! router, scheduler) on a random loopback port, logs in over
//! HTTP with a real client (reqwest) and measures, each case on a topic of its own (a JSON Schema
//! of three properties; payloads of about 100 bytes):
//!
//! 1. single publish: [`SINGLE_CONNECTIONS`] connections each `POST /events` one event at a time;
//!    events/s and the requests' latency;
//! 2. batched publish: [`BATCH_CONNECTIONS`] connections each `POST /events` arrays of
//!    [`BATCH_EVENTS`] events; events/s;
//! 3. end-to-end latency at each of [`RATES`]: a paced publisher posts a batch every [`TICK`]
//!    (rate × tick events) whose payloads carry the send instant (nanoseconds since one shared
//!    [`Instant`]); [`SUBSCRIBERS`] SSE subscribers (`GET /events/{topic}/stream`, frames split on
//!    blank lines) record receive − send of every event in an HDR histogram and count what they
//!    get: every published event must reach every subscriber once.
//!
//! Each case runs [`WARM_UP`] and is then measured for [`PHASE`]. The reference runs the same
//! workloads on NATS JetStream directly (`$SLUICE_TEST_NATS`, default `nats://127.0.0.1:4222`): a
//! temporary memory stream on a unique subject (deleted afterwards), batched publish (publish a
//! batch, then await its acks) and ordered push consumers. An unreachable PostgreSQL or NATS
//! server is an error, found before anything is measured.
//!
//! The batched-publish ratio against NATS is then measured in [`ROUNDS`] interleaved rounds
//! (SQLite hub, PostgreSQL hub, NATS, each on a fresh topic or subject, one after another) and
//! reported as the median of the per-round ratios: on a shared machine whose speed drifts by
//! tens of percent within a minute, only figures taken side by side compare.
//!
//! The hub server runs on its own Tokio runtime of [`SERVER_THREADS`] worker threads; the load
//! generator, the subscribers and the NATS client on the command's runtime: all share the
//! machine's cores.

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use async_nats::jetstream;
use async_nats::jetstream::consumer::{DeliverPolicy, push};
use async_nats::jetstream::stream::{DiscardPolicy, StorageType};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::PgDatabase;
use crate::args::{BenchArgs, Printing};
use crate::report::{table, thousands};
use crate::server::{HubServer, SERVER_THREADS};

/// Before each measured window.
const WARM_UP: Duration = Duration::from_secs(1);
/// Each case's measured window.
const PHASE: Duration = Duration::from_secs(5);
/// Worker threads of the server's runtime (what `sluice serve` gets on a 2-core machine).
/// Connections publishing one event per request.
const SINGLE_CONNECTIONS: usize = 16;
/// Connections publishing batches.
const BATCH_CONNECTIONS: usize = 4;
/// Interleaved rounds of batched publish (each hub, then NATS) whose per-round ratios give the
/// reported ratio (their median).
const ROUNDS: usize = 3;
/// Events per batch of the batched case.
const BATCH_EVENTS: usize = 1_000;
/// Subscribers (SSE streams, or NATS consumers) of the latency cases.
const SUBSCRIBERS: usize = 10;
/// Publish rates of the latency cases, events/s.
const RATES: [u64; 2] = [1_000, 10_000];
/// The paced publisher sends one batch per tick.
const TICK: Duration = Duration::from_millis(10);
/// Paced batches awaiting their answer at most; beyond, the publisher waits (and falls behind
/// its rate, which the report shows).
const MAX_IN_FLIGHT: usize = 64;
/// How long subscribers may take to receive the last events after the publisher stopped.
const DRAIN: Duration = Duration::from_secs(10);
/// Distinct routing keys (`bench.k0` … `bench.k15`); subscribers follow [`PATTERN`].
const ROUTING_KEYS: u64 = 16;
const PATTERN: &str = "bench.*";
/// Pads each payload to about 100 bytes of JSON.
const PAD: &str = "padding-to-make-a-payload-of-about-one-hundred-bytes";
/// Targets the figures are reported against.
const TARGET_BATCHED_EPS: f64 = 50_000.0;
const TARGET_P99_MS: f64 = 10.0;
const TARGET_P99_RATE: u64 = 1_000;

const ADMIN_PASSWORD: &str = "bench-events-admin-password";

/// Nanoseconds since `origin`: the clock of every send and receive stamp.
fn nanos(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn new_histogram() -> Result<Histogram<u64>> {
    // Microseconds, 1 µs to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).context("cannot create a histogram")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// The payload of event `n`, sent at `sent_ns`.
fn payload(sent_ns: u64, n: u64) -> String {
    format!(r#"{{"sent_ns":{sent_ns},"n":{n},"pad":"{PAD}"}}"#)
}

/// The topics' schema (every payload is checked against it).
fn schema() -> Value {
    json!({
        "type": "object",
        "required": ["sent_ns", "n"],
        "properties": {
            "sent_ns": {"type": "integer", "minimum": 0},
            "n": {"type": "integer", "minimum": 0},
            "pad": {"type": "string"},
        },
    })
}

/// Appends event `n` of `topic` as the JSON of `POST /events`.
fn push_event(out: &mut String, topic: &str, sent_ns: u64, n: u64) {
    out.push_str(r#"{"topic":""#);
    out.push_str(topic);
    out.push_str(r#"","routing_key":"bench.k"#);
    out.push_str(&(n % ROUTING_KEYS).to_string());
    out.push_str(r#"","payload":"#);
    out.push_str(&payload(sent_ns, n));
    out.push('}');
}

/// The body of `POST /events`: one event object when `count` is 1, else an array.
fn publish_body(topic: &str, sent_ns: u64, first: u64, count: usize) -> String {
    let mut out = String::with_capacity(count * 180 + 2);
    if count == 1 {
        push_event(&mut out, topic, sent_ns, first);
        return out;
    }
    out.push('[');
    for i in 0..count as u64 {
        if i > 0 {
            out.push(',');
        }
        push_event(&mut out, topic, sent_ns, first + i);
    }
    out.push(']');
    out
}

// ---------------------------------------------------------------------------------------------
// The servers: PostgreSQL database, hub server, HTTP client, NATS.

/// The PostgreSQL server of the bench (`$SLUICE_TEST_PG`, as the tests).
fn pg_server() -> String {
    std::env::var("SLUICE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// The NATS server of the reference (`$SLUICE_TEST_NATS`, as the tests).
fn nats_server() -> String {
    std::env::var("SLUICE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// One keep-alive connection (a client per connection, as a separate program would have).
fn one_connection() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build an HTTP client")
}

/// A logged-in client of the bench server (set-up, and the paced publisher's pool).
struct Api(crate::api::Api);

impl std::ops::Deref for Api {
    type Target = crate::api::Api;

    fn deref(&self) -> &crate::api::Api {
        &self.0
    }
}

impl Api {
    async fn login(base: &str) -> Result<Api> {
        let http = reqwest::Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Api(
            crate::api::Api::login_with(http, base, ADMIN_PASSWORD).await?
        ))
    }

    async fn create_topic(&self, name: &str) -> Result<()> {
        self.post(
            "/topics",
            json!({"name": name, "description": "sluice bench --suite events", "schema": schema()}),
        )
        .await?;
        Ok(())
    }

    fn events_url(&self) -> String {
        format!("{}/events", self.base())
    }
}

/// The NATS reference's connection and its temporary stream.
struct Nats {
    url: String,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stream: String,
    /// Subjects are `<prefix>.<case>.<routing key>`.
    prefix: String,
}

impl Nats {
    async fn connect(url: &str) -> Result<Nats> {
        let unreachable = || {
            format!(
                "NATS with JetStream is unreachable at {url} (start it with scripts/services, or set SLUICE_TEST_NATS)"
            )
        };
        let client = tokio::time::timeout(Duration::from_secs(10), async_nats::connect(url))
            .await
            .map_err(|_| anyhow!("no answer within 10 s"))
            .and_then(|c| c.map_err(anyhow::Error::from))
            .with_context(unreachable)?;
        let jetstream = jetstream::new(client.clone());
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let unique = format!("{}_{stamp}", std::process::id());
        let nats = Nats {
            url: url.to_owned(),
            client,
            jetstream,
            stream: format!("SLUICE_BENCH_{unique}"),
            prefix: format!("sluice.bench.{unique}"),
        };
        nats.jetstream
            .create_stream(jetstream::stream::Config {
                name: nats.stream.clone(),
                subjects: vec![format!("{}.>", nats.prefix)],
                storage: StorageType::Memory,
                // Old messages go first: the throughput case must never be refused for room.
                max_bytes: 256 << 20,
                discard: DiscardPolicy::Old,
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot create a JetStream memory stream on {url}"))?;
        Ok(nats)
    }

    fn subject(&self, case: &str, n: u64) -> String {
        format!("{}.{case}.bench.k{}", self.prefix, n % ROUTING_KEYS)
    }

    async fn delete(&self) -> Result<()> {
        self.jetstream
            .delete_stream(&self.stream)
            .await
            .with_context(|| format!("cannot delete the JetStream stream {}", self.stream))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Throughput.

/// One throughput case.
#[derive(Debug, serde::Serialize)]
struct Throughput {
    case: String,
    connections: usize,
    events_per_request: usize,
    seconds: f64,
    /// Requests (NATS: batches) answered within the measured window.
    requests: u64,
    events: u64,
    events_per_second: f64,
    /// Request latency (NATS: a batch's publish and acks).
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: u64,
    first_error: Option<String>,
}

/// What one connection did.
struct Sent {
    histogram: Histogram<u64>,
    requests: u64,
    events: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Sent {
    fn new() -> Result<Sent> {
        Ok(Sent {
            histogram: new_histogram()?,
            requests: 0,
            events: 0,
            errors: 0,
            first_error: None,
        })
    }

    /// Counts a request answered at `done` (only those answered inside the window count, so a
    /// request that straddles its start counts, and one that straddles its end does not).
    fn answered(
        &mut self,
        window: (Instant, Instant),
        sent: Instant,
        done: Instant,
        outcome: Result<u64, String>,
    ) {
        if done < window.0 || done > window.1 {
            return;
        }
        match outcome {
            Ok(events) => {
                self.requests += 1;
                self.events += events;
                let us = u64::try_from((done - sent).as_micros()).unwrap_or(u64::MAX);
                self.histogram.saturating_record(us.max(1));
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// Runs `connections` drivers for the warm-up and the window, then sums them up.
async fn throughput<F, Fut>(
    case: String,
    connections: usize,
    events_per_request: usize,
    drive: F,
) -> Result<Throughput>
where
    F: Fn(usize, (Instant, Instant)) -> Fut,
    Fut: Future<Output = Result<Sent>> + Send + 'static,
{
    let measure_from = Instant::now() + WARM_UP;
    let window = (measure_from, measure_from + PHASE);
    let mut workers = JoinSet::new();
    for c in 0..connections {
        workers.spawn(drive(c, window));
    }
    let mut histogram = new_histogram()?;
    let (mut requests, mut events, mut errors, mut first_error) = (0, 0, 0, None);
    while let Some(done) = workers.join_next().await {
        let s = done.context("a publishing connection failed")??;
        histogram.add(&s.histogram).context("merge histograms")?;
        requests += s.requests;
        events += s.events;
        errors += s.errors;
        if first_error.is_none() {
            first_error = s.first_error;
        }
    }
    let seconds = PHASE.as_secs_f64();
    Ok(Throughput {
        case,
        connections,
        events_per_request,
        seconds,
        requests,
        events,
        events_per_second: events as f64 / seconds,
        p50_ms: ms(&histogram, 0.50),
        p99_ms: ms(&histogram, 0.99),
        max_ms: histogram.max() as f64 / 1000.0,
        errors,
        first_error,
    })
}

#[derive(Deserialize)]
struct Items {
    items: Vec<IgnoredAny>,
}

/// `POST /events` back to back on one connection until the window ends.
async fn post_events(
    url: String,
    token: String,
    topic: String,
    connection: usize,
    count: usize,
    window: (Instant, Instant),
) -> Result<Sent> {
    let http = one_connection()?;
    let mut stats = Sent::new()?;
    let mut n = connection as u64 * 1_000_000_000;
    loop {
        let sent = Instant::now();
        if sent >= window.1 {
            return Ok(stats);
        }
        let body = publish_body(&topic, 0, n, count);
        n += count as u64;
        let answer = http
            .post(&url)
            .bearer_auth(&token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let outcome = match answer {
            Ok(resp) => {
                let status = resp.status();
                match resp.bytes().await {
                    Ok(b) if status != reqwest::StatusCode::CREATED => Err(format!(
                        "status {status}: {}",
                        String::from_utf8_lossy(&b[..b.len().min(300)])
                    )),
                    Ok(_) if count == 1 => Ok(1),
                    Ok(b) => match serde_json::from_slice::<Items>(&b) {
                        Ok(items) if items.items.len() == count => Ok(count as u64),
                        Ok(items) => Err(format!(
                            "{} events published, {} answered",
                            count,
                            items.items.len()
                        )),
                        Err(e) => Err(format!("the answer is not the published list: {e}")),
                    },
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        let failed = outcome.is_err();
        stats.answered(window, sent, Instant::now(), outcome);
        if failed {
            // Do not spin on a refused connection.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Publishes batches to NATS back to back (publish every message, then await the acks) until
/// the window ends.
async fn nats_batches(
    jetstream: jetstream::Context,
    subjects: Vec<String>,
    connection: usize,
    window: (Instant, Instant),
) -> Result<Sent> {
    let mut stats = Sent::new()?;
    let mut n = connection as u64 * 1_000_000_000;
    loop {
        let sent = Instant::now();
        if sent >= window.1 {
            return Ok(stats);
        }
        let mut acks = Vec::with_capacity(BATCH_EVENTS);
        let mut outcome = Ok(BATCH_EVENTS as u64);
        for _ in 0..BATCH_EVENTS {
            let subject = subjects[(n % ROUTING_KEYS) as usize].clone();
            match jetstream.publish(subject, payload(0, n).into()).await {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    outcome = Err(e.to_string());
                    break;
                }
            }
            n += 1;
        }
        for ack in acks {
            if let Err(e) = ack.await
                && outcome.is_ok()
            {
                outcome = Err(e.to_string());
            }
        }
        stats.answered(window, sent, Instant::now(), outcome);
    }
}

// ---------------------------------------------------------------------------------------------
// End-to-end latency.

/// One latency case.
#[derive(Debug, serde::Serialize)]
struct Latency {
    case: String,
    rate: u64,
    subscribers: usize,
    /// Publishing time, warm-up included.
    seconds: f64,
    /// Events acknowledged as stored (published).
    published: u64,
    achieved_rate: f64,
    publish_errors: u64,
    first_publish_error: Option<String>,
    /// `published` × subscribers.
    expected_deliveries: u64,
    delivered: u64,
    lost: u64,
    /// Events delivered again (or out of order) to a subscriber.
    duplicates: u64,
    /// Deliveries of events not acknowledged to the publisher (a publish that failed late).
    unexpected: u64,
    /// Deliveries of events sent after the warm-up (the histogram's).
    measured_deliveries: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    lag_notices: u64,
    /// Subscriptions that ended early, and why.
    cutoffs: Vec<String>,
}

impl Latency {
    /// Every published event reached every subscriber once, and there were events to deliver:
    /// a case whose publishes all failed delivers "0 of 0", which is no success.
    fn all_delivered(&self) -> bool {
        self.lost == 0
            && self.duplicates == 0
            && self.cutoffs.is_empty()
            && self.publish_errors == 0
            && self.expected_deliveries > 0
    }
}

/// What one subscriber received.
struct Tally {
    histogram: Histogram<u64>,
    delivered: u64,
    duplicates: u64,
    last_seq: u64,
    lag_notices: u64,
    cutoff: Option<String>,
    /// Only events sent from here on go into the histogram.
    measure_from_ns: u64,
    progress: Arc<AtomicU64>,
}

impl Tally {
    fn new(measure_from_ns: u64, progress: Arc<AtomicU64>) -> Result<Tally> {
        Ok(Tally {
            histogram: new_histogram()?,
            delivered: 0,
            duplicates: 0,
            last_seq: 0,
            lag_notices: 0,
            cutoff: None,
            measure_from_ns,
            progress,
        })
    }

    fn event(&mut self, seq: u64, sent_ns: u64, received_ns: u64) {
        if seq <= self.last_seq {
            self.duplicates += 1;
            return;
        }
        self.last_seq = seq;
        self.delivered += 1;
        self.progress.fetch_add(1, Ordering::Relaxed);
        if sent_ns >= self.measure_from_ns {
            let us = received_ns.saturating_sub(sent_ns) / 1000;
            self.histogram.saturating_record(us.max(1));
        }
    }
}

/// The part of a delivered event the subscriber reads.
#[derive(Deserialize)]
struct Delivered {
    seq: u64,
    payload: Stamp,
}

#[derive(Deserialize)]
struct Stamp {
    sent_ns: u64,
}

/// Takes one SSE frame (the lines before a blank line).
fn sse_frame(frame: &[u8], received_ns: u64, tally: &mut Tally) -> Result<()> {
    let text = std::str::from_utf8(frame).context("an SSE frame is not UTF-8")?;
    let mut kind = "message";
    let mut data = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(v) = line.strip_prefix("event:") {
            kind = v.trim_start();
        } else if let Some(v) = line.strip_prefix("data:") {
            data = Some(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    match (kind, data) {
        ("message", Some(d)) => {
            let e: Delivered = serde_json::from_str(d)
                .with_context(|| format!("an SSE event is not a bench event: {d}"))?;
            tally.event(e.seq, e.payload.sent_ns, received_ns);
        }
        ("lag", _) => tally.lag_notices += 1,
        ("cutoff", d) => tally.cutoff = Some(d.unwrap_or_default().to_owned()),
        // Keep-alive comments, and anything else without data.
        _ => {}
    }
    Ok(())
}

/// Takes the complete frames at the front of `buf`; keeps the incomplete rest.
fn sse_frames(buf: &mut Vec<u8>, received_ns: u64, tally: &mut Tally) -> Result<()> {
    let mut start = 0;
    while let Some(end) = buf[start..].windows(2).position(|w| w == b"\n\n") {
        sse_frame(&buf[start..start + end], received_ns, tally)?;
        start += end + 2;
    }
    buf.drain(..start);
    Ok(())
}

/// Opens an SSE stream of `topic`; answers once the server has subscribed it.
async fn open_sse(api: &Api, topic: &str) -> Result<reqwest::Response> {
    // No overall timeout: the body streams for the whole case.
    let http = reqwest::Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let resp = http
        .get(format!(
            "{}/events/{topic}/stream?routing_key={PATTERN}",
            api.base()
        ))
        .bearer_auth(api.token())
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await
        .with_context(|| format!("GET /events/{topic}/stream"))?;
    if resp.status() != reqwest::StatusCode::OK {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        bail!("GET /events/{topic}/stream: {status}: {text}");
    }
    Ok(resp)
}

/// Reads an SSE stream until `stop` (or the stream ends).
async fn follow_sse(
    resp: reqwest::Response,
    origin: Instant,
    mut tally: Tally,
    stop: CancellationToken,
) -> Result<Tally> {
    let mut body = resp.bytes_stream();
    let mut buf = Vec::with_capacity(64 << 10);
    loop {
        let chunk = tokio::select! {
            c = body.next() => c,
            _ = stop.cancelled() => return Ok(tally),
        };
        match chunk {
            Some(Ok(bytes)) => {
                let received_ns = nanos(origin);
                buf.extend_from_slice(&bytes);
                sse_frames(&mut buf, received_ns, &mut tally)?;
                if tally.cutoff.is_some() {
                    return Ok(tally);
                }
            }
            Some(Err(e)) => {
                tally.cutoff = Some(format!("the stream failed: {e}"));
                return Ok(tally);
            }
            None => {
                tally.cutoff = Some("the stream ended".to_owned());
                return Ok(tally);
            }
        }
    }
}

/// Reads an ordered push consumer until `stop`.
async fn follow_nats(
    mut messages: push::Ordered,
    origin: Instant,
    mut tally: Tally,
    stop: CancellationToken,
) -> Result<Tally> {
    loop {
        let next = tokio::select! {
            m = messages.next() => m,
            _ = stop.cancelled() => return Ok(tally),
        };
        match next {
            Some(Ok(message)) => {
                let received_ns = nanos(origin);
                let seq = message
                    .info()
                    .map_err(|e| anyhow!("a NATS message without JetStream info: {e}"))?
                    .stream_sequence;
                let stamp: Stamp = serde_json::from_slice(&message.payload)
                    .context("a NATS message is not a bench payload")?;
                tally.event(seq, stamp.sent_ns, received_ns);
            }
            Some(Err(e)) => {
                tally.cutoff = Some(format!("the consumer failed: {e}"));
                return Ok(tally);
            }
            None => {
                tally.cutoff = Some("the consumer ended".to_owned());
                return Ok(tally);
            }
        }
    }
}

/// What the paced publisher did.
#[derive(Default)]
struct Paced {
    published: u64,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
}

impl Paced {
    fn take(&mut self, done: Result<Result<u64, String>, tokio::task::JoinError>) {
        match done {
            Ok(Ok(n)) => self.published += n,
            Ok(Err(e)) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e.to_string());
            }
        }
    }
}

/// Publishes `rate` events/s for the warm-up and the window: every [`TICK`] one batch, stamped
/// when its tick comes, sent by its own task (at most [`MAX_IN_FLIGHT`] at once).
async fn pace<F, Fut>(rate: u64, origin: Instant, send: F) -> Paced
where
    F: Fn(u64, u64, usize) -> Fut,
    Fut: Future<Output = Result<u64, String>> + Send + 'static,
{
    let per_tick = ((rate as f64) * TICK.as_secs_f64()).round().max(1.0) as usize;
    let started = Instant::now();
    let end = started + WARM_UP + PHASE;
    let mut ticks = tokio::time::interval(TICK);
    // A late tick is sent at once: the rate holds on average.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = JoinSet::new();
    let mut paced = Paced::default();
    let mut n = 0;
    loop {
        ticks.tick().await;
        if Instant::now() >= end {
            break;
        }
        while let Some(done) = tasks.try_join_next() {
            paced.take(done);
        }
        while tasks.len() >= MAX_IN_FLIGHT {
            if let Some(done) = tasks.join_next().await {
                paced.take(done);
            }
        }
        tasks.spawn(send(n, nanos(origin), per_tick));
        n += per_tick as u64;
    }
    while let Some(done) = tasks.join_next().await {
        paced.take(done);
    }
    paced.seconds = started.elapsed().as_secs_f64();
    paced
}

/// Runs a latency case: `followers` are already subscribed; `send` publishes one paced batch.
async fn latency<F, Fut>(
    case: String,
    rate: u64,
    origin: Instant,
    followers: Vec<tokio::task::JoinHandle<Result<Tally>>>,
    progress: Vec<Arc<AtomicU64>>,
    stop: CancellationToken,
    send: F,
) -> Result<Latency>
where
    F: Fn(u64, u64, usize) -> Fut,
    Fut: Future<Output = Result<u64, String>> + Send + 'static,
{
    let subscribers = followers.len();
    let paced = pace(rate, origin, send).await;
    let expected = paced.published * subscribers as u64;
    let deadline = Instant::now() + DRAIN;
    while Instant::now() < deadline {
        let delivered: u64 = progress.iter().map(|p| p.load(Ordering::Relaxed)).sum();
        if delivered >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    let mut histogram = new_histogram()?;
    let (mut delivered, mut duplicates, mut lag_notices, mut cutoffs) = (0, 0, 0, Vec::new());
    let mut per_subscriber = Vec::new();
    for f in followers {
        let t = f.await.context("a subscriber failed")??;
        histogram.add(&t.histogram).context("merge histograms")?;
        delivered += t.delivered;
        duplicates += t.duplicates;
        lag_notices += t.lag_notices;
        if let Some(c) = t.cutoff {
            cutoffs.push(c);
        }
        per_subscriber.push(t.delivered);
    }
    let lost = per_subscriber
        .iter()
        .map(|d| paced.published.saturating_sub(*d))
        .sum();
    let unexpected = per_subscriber
        .iter()
        .map(|d| d.saturating_sub(paced.published))
        .sum();
    Ok(Latency {
        case,
        rate,
        subscribers,
        seconds: paced.seconds,
        published: paced.published,
        achieved_rate: paced.published as f64 / paced.seconds,
        publish_errors: paced.errors,
        first_publish_error: paced.first_error,
        expected_deliveries: expected,
        delivered,
        lost,
        duplicates,
        unexpected,
        measured_deliveries: histogram.len(),
        p50_ms: ms(&histogram, 0.50),
        p99_ms: ms(&histogram, 0.99),
        max_ms: histogram.max() as f64 / 1000.0,
        lag_notices,
        cutoffs,
    })
}

/// The latency case on the hub server: SSE subscribers, a paced HTTP publisher.
async fn hub_latency(api: &Api, rate: u64, origin: Instant) -> Result<Latency> {
    let topic = format!("bench.latency{rate}");
    api.create_topic(&topic).await?;
    let stop = CancellationToken::new();
    let measure_from_ns = nanos(origin) + u64::try_from(WARM_UP.as_nanos()).unwrap_or(0);
    let (mut followers, mut progress) = (Vec::new(), Vec::new());
    for _ in 0..SUBSCRIBERS {
        let resp = open_sse(api, &topic).await?;
        let p = Arc::new(AtomicU64::new(0));
        let tally = Tally::new(measure_from_ns, p.clone())?;
        progress.push(p);
        followers.push(tokio::spawn(follow_sse(resp, origin, tally, stop.clone())));
    }
    // A pool: batches whose answer is late go out on further connections.
    let http = reqwest::Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    let (url, token) = (api.events_url(), api.token());
    latency(
        format!("end to end at {} events/s", thousands(rate)),
        rate,
        origin,
        followers,
        progress,
        stop,
        move |first, sent_ns, count| {
            let request = http
                .post(&url)
                .bearer_auth(&token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(publish_body(&topic, sent_ns, first, count));
            async move {
                let resp = request.send().await.map_err(|e| e.to_string())?;
                let status = resp.status();
                let body = resp.bytes().await.map_err(|e| e.to_string())?;
                if status != reqwest::StatusCode::CREATED {
                    return Err(format!(
                        "status {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    ));
                }
                Ok(count as u64)
            }
        },
    )
    .await
}

/// The latency case on NATS: ordered push consumers, a paced JetStream publisher.
async fn nats_latency(nats: &Nats, rate: u64, origin: Instant) -> Result<Latency> {
    let case = format!("latency{rate}");
    let stream = nats
        .jetstream
        .get_stream(&nats.stream)
        .await
        .context("cannot open the JetStream stream")?;
    let stop = CancellationToken::new();
    let measure_from_ns = nanos(origin) + u64::try_from(WARM_UP.as_nanos()).unwrap_or(0);
    let (mut followers, mut progress) = (Vec::new(), Vec::new());
    for _ in 0..SUBSCRIBERS {
        let consumer = stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: nats.client.new_inbox(),
                filter_subject: format!("{}.{case}.>", nats.prefix),
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await
            .context("cannot create a NATS ordered consumer")?;
        let messages = consumer
            .messages()
            .await
            .context("cannot read a NATS ordered consumer")?;
        let p = Arc::new(AtomicU64::new(0));
        let tally = Tally::new(measure_from_ns, p.clone())?;
        progress.push(p);
        followers.push(tokio::spawn(follow_nats(
            messages,
            origin,
            tally,
            stop.clone(),
        )));
    }
    nats.client
        .flush()
        .await
        .context("cannot flush the NATS connection")?;
    let subjects: Arc<Vec<String>> =
        Arc::new((0..ROUTING_KEYS).map(|k| nats.subject(&case, k)).collect());
    let jetstream = nats.jetstream.clone();
    latency(
        format!("end to end at {} events/s", thousands(rate)),
        rate,
        origin,
        followers,
        progress,
        stop,
        move |first, sent_ns, count| {
            let jetstream = jetstream.clone();
            let subjects = subjects.clone();
            async move {
                let mut acks = Vec::with_capacity(count);
                for n in first..first + count as u64 {
                    let subject = subjects[(n % ROUTING_KEYS) as usize].clone();
                    let ack = jetstream
                        .publish(subject, payload(sent_ns, n).into())
                        .await
                        .map_err(|e| e.to_string())?;
                    acks.push(ack);
                }
                let mut acks: FuturesUnordered<_> =
                    acks.into_iter().map(IntoFuture::into_future).collect();
                while let Some(ack) = acks.next().await {
                    ack.map_err(|e| e.to_string())?;
                }
                Ok(count as u64)
            }
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// The suite.

/// The figures of one repository.
#[derive(Debug, serde::Serialize)]
struct HubReport {
    repository: String,
    single: Throughput,
    batched: Throughput,
    latency: Vec<Latency>,
}

/// The figures of the NATS reference.
#[derive(Debug, serde::Serialize)]
struct NatsReport {
    server: String,
    version: String,
    batched: Throughput,
    latency: Vec<Latency>,
}

/// sluice over NATS for one repository.
#[derive(Debug, serde::Serialize)]
struct Ratios {
    repository: String,
    /// The median of the per-round ratios of [`Report::rounds`].
    batched_publish: f64,
    /// Each round's ratio.
    batched_publish_rounds: Vec<f64>,
    /// By rate.
    p99: Vec<(u64, f64)>,
}

/// Every figure of a run.
#[derive(Debug, serde::Serialize)]
struct Report {
    hubs: Vec<HubReport>,
    nats: NatsReport,
    /// Interleaved rounds of batched publish, for the ratios.
    rounds: Vec<BatchedRound>,
    ratios: Vec<Ratios>,
    targets: Targets,
    cores: usize,
    server_threads: usize,
    warm_up_seconds: f64,
    seconds_per_case: f64,
    note: String,
}

#[derive(Debug, serde::Serialize)]
struct Targets {
    batched_publish_sqlite_events_per_second: f64,
    batched_publish_sqlite_met: bool,
    p99_ms_at_1000_events_per_second: f64,
    p99_met: Vec<(String, bool)>,
    every_event_delivered: bool,
}

/// Runs the cases on one hub server.
async fn measure_hub(server: &HubServer, repository: &str, g: &Printing) -> Result<HubReport> {
    let api = Api::login(&server.base).await?;
    let origin = Instant::now();
    let progress = |what: &str| {
        if !g.json {
            note!(
                "{repository}: {what} ({} s warm-up, {} s measured) …",
                WARM_UP.as_secs(),
                PHASE.as_secs()
            );
        }
    };

    progress(&format!(
        "publish, single events, {SINGLE_CONNECTIONS} connections"
    ));
    api.create_topic("bench.single").await?;
    let (url, token) = (api.events_url(), api.token());
    let single = throughput(
        format!("publish, single events, {SINGLE_CONNECTIONS} connections"),
        SINGLE_CONNECTIONS,
        1,
        |c, window| {
            post_events(
                url.clone(),
                token.clone(),
                "bench.single".into(),
                c,
                1,
                window,
            )
        },
    )
    .await?;

    progress(&format!(
        "publish, batches of {}, {BATCH_CONNECTIONS} connections",
        thousands(BATCH_EVENTS as u64)
    ));
    let batched = hub_batched(&api, "bench.batched").await?;

    let mut latencies = Vec::new();
    for rate in RATES {
        progress(&format!(
            "end to end at {} events/s, {SUBSCRIBERS} SSE subscribers",
            thousands(rate)
        ));
        latencies.push(hub_latency(&api, rate, origin).await?);
    }
    Ok(HubReport {
        repository: repository.to_owned(),
        single,
        batched,
        latency: latencies,
    })
}

/// The batched publish case on a hub, into a new topic `topic`.
async fn hub_batched(api: &Api, topic: &str) -> Result<Throughput> {
    api.create_topic(topic).await?;
    let (url, token) = (api.events_url(), api.token());
    throughput(
        format!(
            "publish, batches of {}, {BATCH_CONNECTIONS} connections",
            thousands(BATCH_EVENTS as u64)
        ),
        BATCH_CONNECTIONS,
        BATCH_EVENTS,
        |c, window| {
            post_events(
                url.clone(),
                token.clone(),
                topic.into(),
                c,
                BATCH_EVENTS,
                window,
            )
        },
    )
    .await
}

/// The batched publish case on NATS, on the subjects of `case`.
async fn nats_batched(nats: &Nats, case: &str) -> Result<Throughput> {
    let subjects: Vec<String> = (0..ROUTING_KEYS).map(|k| nats.subject(case, k)).collect();
    throughput(
        format!(
            "publish, batches of {} (publish, then await the acks), {BATCH_CONNECTIONS} tasks",
            thousands(BATCH_EVENTS as u64)
        ),
        BATCH_CONNECTIONS,
        BATCH_EVENTS,
        |c, window| nats_batches(nats.jetstream.clone(), subjects.clone(), c, window),
    )
    .await
}

/// One round of the batched publish case on each hub and on NATS, back to back.
#[derive(Debug, serde::Serialize)]
struct BatchedRound {
    /// Events/s per repository, in the order of the report's hubs.
    hubs: Vec<(String, f64)>,
    nats: f64,
}

/// [`ROUNDS`] rounds of batched publish, each on every hub (`(spec, repository)`) then on
/// NATS, so the machine's drift hits both sides of a ratio alike.
async fn batched_rounds(
    hubs: &[(&str, &str)],
    nats: &Nats,
    g: &Printing,
) -> Result<Vec<BatchedRound>> {
    let mut rounds = Vec::with_capacity(ROUNDS);
    for round in 1..=ROUNDS {
        if !g.json {
            note!(
                "batched publish, round {round} of {ROUNDS}: {} and NATS …",
                hubs.iter().map(|h| h.1).collect::<Vec<_>>().join(", ")
            );
        }
        let mut figures = Vec::with_capacity(hubs.len());
        for (spec, repository) in hubs {
            let server = HubServer::start(spec, ADMIN_PASSWORD, "sluice bench events").await?;
            let measured = async {
                let api = Api::login(&server.base).await?;
                hub_batched(&api, &format!("bench.round{round}")).await
            }
            .await;
            server.stop().await;
            let t = measured
                .with_context(|| format!("batched publish on {repository}, round {round}"))?;
            figures.push(((*repository).to_owned(), t.events_per_second));
        }
        let n = nats_batched(nats, &format!("round{round}")).await?;
        rounds.push(BatchedRound {
            hubs: figures,
            nats: n.events_per_second,
        });
    }
    Ok(rounds)
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Runs the cases on NATS.
async fn measure_nats(nats: &Nats, g: &Printing) -> Result<NatsReport> {
    let origin = Instant::now();
    let progress = |what: &str| {
        if !g.json {
            note!(
                "NATS JetStream: {what} ({} s warm-up, {} s measured) …",
                WARM_UP.as_secs(),
                PHASE.as_secs()
            );
        }
    };
    progress(&format!(
        "publish, batches of {}, {BATCH_CONNECTIONS} connections",
        thousands(BATCH_EVENTS as u64)
    ));
    let batched = nats_batched(nats, "batched").await?;
    let mut latencies = Vec::new();
    for rate in RATES {
        progress(&format!(
            "end to end at {} events/s, {SUBSCRIBERS} ordered push consumers",
            thousands(rate)
        ));
        latencies.push(nats_latency(nats, rate, origin).await?);
    }
    Ok(NatsReport {
        server: nats.url.clone(),
        version: nats.client.server_info().version,
        batched,
        latency: latencies,
    })
}

/// Starts a hub server on `spec`, runs the cases, stops it.
async fn run_hub(spec: &str, repository: &str, g: &Printing) -> Result<HubReport> {
    let server = HubServer::start(spec, ADMIN_PASSWORD, "sluice bench events").await?;
    let measured = measure_hub(&server, repository, g).await;
    server.stop().await;
    measured.with_context(|| format!("the bench on {repository} failed"))
}

/// Runs the suite.
pub async fn run(args: BenchArgs, g: &Printing) -> Result<()> {
    // reqwest is built without a crypto provider of its own (plain HTTP needs none to run).
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Both servers are needed: find out before measuring anything.
    let pg = PgDatabase::create(&pg_server(), "sluice_bench_events").await?;
    let nats = match Nats::connect(&nats_server()).await {
        Ok(n) => n,
        Err(e) => {
            drop_pg(&pg).await;
            return Err(e);
        }
    };
    let outcome = measure_all(&pg, &nats, g).await;
    drop_pg(&pg).await;
    if let Err(e) = nats.delete().await {
        note!("warning: {e:#}");
    }
    let report = outcome?;
    if g.json {
        crate::report::json(&report)?;
    } else {
        print_report(&report, args.markdown);
    }
    Ok(())
}

async fn drop_pg(pg: &PgDatabase) {
    if let Err(e) = pg.drop_db().await {
        note!(
            "warning: could not drop the bench database {}: {e:#}",
            pg.name
        );
    }
}

async fn measure_all(pg: &PgDatabase, nats_server: &Nats, g: &Printing) -> Result<Report> {
    let work = tempfile::Builder::new()
        .prefix("sluice-bench-events")
        .tempdir()
        .context("cannot create a temp dir")?;
    let sqlite_spec = format!("sqlite:{}", work.path().join("hub.db").display());
    let sqlite = run_hub(&sqlite_spec, "SQLite", g).await?;
    let postgres = run_hub(&pg.spec, "PostgreSQL", g).await?;
    let nats = measure_nats(nats_server, g).await?;
    let rounds = batched_rounds(
        &[(&sqlite_spec, "SQLite"), (&pg.spec, "PostgreSQL")],
        nats_server,
        g,
    )
    .await?;

    let hubs = vec![sqlite, postgres];
    let ratios = hubs
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let per_round: Vec<f64> = rounds.iter().map(|r| r.hubs[i].1 / r.nats).collect();
            (h, per_round)
        })
        .map(|(h, per_round)| Ratios {
            repository: h.repository.clone(),
            batched_publish: median(&mut per_round.clone()),
            batched_publish_rounds: per_round,
            p99: h
                .latency
                .iter()
                .zip(&nats.latency)
                .map(|(s, n)| (s.rate, s.p99_ms / n.p99_ms))
                .collect(),
        })
        .collect();
    let p99_at = |h: &HubReport| {
        h.latency
            .iter()
            .find(|l| l.rate == TARGET_P99_RATE)
            .map(|l| l.p99_ms)
    };
    let targets = Targets {
        batched_publish_sqlite_events_per_second: TARGET_BATCHED_EPS,
        batched_publish_sqlite_met: hubs[0].batched.events_per_second >= TARGET_BATCHED_EPS
            && hubs[0].batched.errors == 0,
        p99_ms_at_1000_events_per_second: TARGET_P99_MS,
        p99_met: hubs
            .iter()
            .map(|h| {
                (
                    h.repository.clone(),
                    p99_at(h).is_some_and(|p| p < TARGET_P99_MS),
                )
            })
            .collect(),
        every_event_delivered: hubs
            .iter()
            .flat_map(|h| &h.latency)
            .all(Latency::all_delivered),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(Report {
        hubs,
        rounds,
        nats,
        ratios,
        targets,
        cores,
        server_threads: SERVER_THREADS,
        warm_up_seconds: WARM_UP.as_secs_f64(),
        seconds_per_case: PHASE.as_secs_f64(),
        note: format!(
            "load generator, subscribers, hub server and NATS client run in this one process and share the machine's {cores} core(s) \
             (the hub server on its own runtime of {SERVER_THREADS} worker threads); sluice stores every event durably \
             (SQLite WAL synchronous=FULL, PostgreSQL committed) before it answers, the NATS stream keeps them in memory"
        ),
    })
}

// ---------------------------------------------------------------------------------------------
// Printing.

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn throughput_row(t: &Throughput, target: String) -> Vec<String> {
    let mut target = target;
    if t.errors > 0 {
        target = format!("{target} {} errors", thousands(t.errors));
    }
    vec![
        t.case.clone(),
        thousands(t.events_per_second.round() as u64),
        format!("{:.2}", t.p50_ms),
        format!("{:.2}", t.p99_ms),
        format!("{:.2}", t.max_ms),
        String::new(),
        target.trim().to_owned(),
    ]
}

fn latency_row(l: &Latency, subscribers: &str, target: String) -> Vec<String> {
    let mut delivered = format!(
        "{} of {}",
        thousands(l.delivered),
        thousands(l.expected_deliveries)
    );
    if l.lost > 0 {
        delivered.push_str(&format!(", LOST {}", thousands(l.lost)));
    }
    if l.duplicates > 0 {
        delivered.push_str(&format!(", {} duplicates", thousands(l.duplicates)));
    }
    if !l.cutoffs.is_empty() {
        delivered.push_str(&format!(", {} cut off", l.cutoffs.len()));
    }
    if l.publish_errors > 0 {
        delivered.push_str(&format!(", {} publish errors", l.publish_errors));
    }
    vec![
        format!("{}, {} {subscribers}", l.case, l.subscribers),
        thousands(l.achieved_rate.round() as u64),
        format!("{:.2}", l.p50_ms),
        format!("{:.2}", l.p99_ms),
        format!("{:.2}", l.max_ms),
        delivered,
        target,
    ]
}

const HEADERS: [&str; 7] = [
    "case",
    "events/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "delivered",
    "target",
];

fn print_table(rows: Vec<Vec<String>>, markdown: bool) {
    if markdown {
        say!("| {} |", HEADERS.join(" | "));
        say!("|---|---:|---:|---:|---:|---:|---|");
        for r in rows {
            say!("| {} |", r.join(" | "));
        }
    } else {
        say!("{}", table(&HEADERS, rows));
    }
}

fn hub_rows(h: &HubReport) -> Vec<Vec<String>> {
    let sqlite = h.repository == "SQLite";
    let mut rows = vec![
        throughput_row(&h.single, String::new()),
        throughput_row(
            &h.batched,
            if sqlite {
                format!(
                    "≥ {} {}",
                    thousands(TARGET_BATCHED_EPS as u64),
                    met(h.batched.events_per_second >= TARGET_BATCHED_EPS)
                )
            } else {
                String::new()
            },
        ),
    ];
    for l in &h.latency {
        let mut target = format!("all delivered {}", met(l.all_delivered()));
        if l.rate == TARGET_P99_RATE {
            target = format!(
                "p99 < {TARGET_P99_MS:.0} ms {}; {target}",
                met(l.p99_ms < TARGET_P99_MS)
            );
        }
        rows.push(latency_row(l, "SSE subscribers", target));
    }
    rows
}

fn print_report(r: &Report, markdown: bool) {
    let heading = |text: String| {
        if markdown {
            say!("\n{text}\n");
        } else {
            say!("\n{text}");
        }
    };
    for h in &r.hubs {
        heading(format!(
            "sluice event hub, {} repository, in-process broker, over loopback HTTP",
            h.repository
        ));
        print_table(hub_rows(h), markdown);
    }
    heading(format!(
        "reference: NATS JetStream {} at {}, memory stream",
        r.nats.version, r.nats.server
    ));
    let mut rows = vec![throughput_row(&r.nats.batched, String::new())];
    for l in &r.nats.latency {
        rows.push(latency_row(
            l,
            "ordered push consumers",
            format!("all delivered {}", met(l.all_delivered())),
        ));
    }
    print_table(rows, markdown);
    say!("");
    say!(
        "publish rows: p50/p99/max of the request (a batch: all its events stored and answered); end-to-end rows: publish → delivery of every event to every subscriber (send instant to the subscriber's receipt), events sent in the first {:.0} s left out",
        r.warm_up_seconds
    );
    for (i, round) in r.rounds.iter().enumerate() {
        let hubs: Vec<String> = round
            .hubs
            .iter()
            .map(|(repo, eps)| format!("{repo} {}", thousands(eps.round() as u64)))
            .collect();
        say!(
            "batched publish round {} (events/s): {}, NATS {}",
            i + 1,
            hubs.join(", "),
            thousands(round.nats.round() as u64)
        );
    }
    for q in &r.ratios {
        let p99: Vec<String> = q
            .p99
            .iter()
            .map(|(rate, x)| format!("{x:.2}× at {} events/s", thousands(*rate)))
            .collect();
        let rounds: Vec<String> = q
            .batched_publish_rounds
            .iter()
            .map(|x| format!("{x:.2}"))
            .collect();
        say!(
            "{}: batched publish {:.2}× NATS's (median of {} interleaved rounds: {}); p99 {}",
            q.repository,
            q.batched_publish,
            rounds.len(),
            rounds.join(", "),
            p99.join(", ")
        );
    }
    let t = &r.targets;
    let p99: Vec<String> = t
        .p99_met
        .iter()
        .map(|(repo, ok)| format!("{repo} {}", met(*ok)))
        .collect();
    say!(
        "targets: batched publish on SQLite ≥ {} events/s {}; p99 < {:.0} ms at {} events/s: {}; every event delivered to every subscriber {}",
        thousands(t.batched_publish_sqlite_events_per_second as u64),
        met(t.batched_publish_sqlite_met),
        t.p99_ms_at_1000_events_per_second,
        thousands(TARGET_P99_RATE),
        p99.join(", "),
        met(t.every_event_delivered)
    );
    for h in &r.hubs {
        for (what, e) in [
            ("single publish", &h.single.first_error),
            ("batched publish", &h.batched.first_error),
        ] {
            if let Some(e) = e {
                say!("{} {what}: first error: {e}", h.repository);
            }
        }
        for l in &h.latency {
            if let Some(e) = &l.first_publish_error {
                say!("{} {}: first publish error: {e}", h.repository, l.case);
            }
            for c in &l.cutoffs {
                say!("{} {}: a subscription ended: {c}", h.repository, l.case);
            }
        }
    }
    say!("note: {}", r.note);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally() -> Tally {
        Tally::new(0, Arc::new(AtomicU64::new(0))).expect("valid histogram bounds")
    }

    #[test]
    fn bodies_are_the_events_of_the_api() {
        let one: Value = serde_json::from_str(&publish_body("t", 7, 17, 1)).expect("JSON");
        assert_eq!(one["topic"], "t");
        assert_eq!(one["routing_key"], "bench.k1");
        assert_eq!(one["payload"]["sent_ns"], 7);
        let text = payload(1_700_000_000_000, 123_456);
        assert!((90..=110).contains(&text.len()), "{} bytes", text.len());
        let many: Value = serde_json::from_str(&publish_body("t", 7, 0, 3)).expect("JSON");
        assert_eq!(many.as_array().map(Vec::len), Some(3));
        assert_eq!(many[2]["payload"]["n"], 2);
    }

    #[test]
    fn sse_frames_split_on_blank_lines_and_keep_the_rest() {
        let mut t = tally();
        let mut buf = b": keep-alive\n\nid: 1\ndata: {\"seq\":1,\"topic\":\"t\",\"payload\":{\"sent_ns\":1000,\"n\":0}}\n\nid: 2\ndata: {\"seq\":2,\"pay".to_vec();
        sse_frames(&mut buf, 3_000_000, &mut t).expect("valid frames");
        assert_eq!(t.delivered, 1);
        assert_eq!(t.histogram.max(), t.histogram.highest_equivalent(2_999));
        assert!(buf.starts_with(b"id: 2"));
        buf.extend_from_slice(b"load\":{\"sent_ns\":0}}\n\nid: 2\ndata: {\"seq\":2,\"payload\":{\"sent_ns\":0}}\n\nevent: lag\ndata: {\"behind\":20000}\n\nevent: cutoff\ndata: {\"reason\":\"x\",\"resume_after\":2}\n\n");
        sse_frames(&mut buf, 4_000_000, &mut t).expect("valid frames");
        assert_eq!((t.delivered, t.duplicates, t.lag_notices), (2, 1, 1));
        assert!(
            t.cutoff
                .as_deref()
                .is_some_and(|c| c.contains("resume_after"))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn only_events_sent_after_the_warm_up_are_timed() {
        let mut t = Tally::new(10_000, Arc::new(AtomicU64::new(0))).expect("valid bounds");
        t.event(1, 5_000, 6_000_000);
        t.event(2, 10_000, 2_010_000);
        assert_eq!(t.delivered, 2);
        assert_eq!(t.histogram.len(), 1);
        assert_eq!(t.progress.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn requests_count_when_answered_inside_the_window() {
        let start = Instant::now();
        let window = (
            start + Duration::from_secs(1),
            start + Duration::from_secs(2),
        );
        let mut s = Sent::new().expect("valid bounds");
        s.answered(window, start, start + Duration::from_millis(500), Ok(10));
        s.answered(window, start, start + Duration::from_millis(1500), Ok(10));
        s.answered(window, start, start + Duration::from_millis(2500), Ok(10));
        s.answered(
            window,
            start,
            start + Duration::from_millis(1600),
            Err("x".into()),
        );
        assert_eq!((s.requests, s.events, s.errors), (1, 10, 1));
    }
}
