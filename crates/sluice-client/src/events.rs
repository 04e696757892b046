//! The event hub: topics, publish, and following a topic live over SSE with automatic resume.

use std::time::Duration;

use futures::{Stream, StreamExt};
use reqwest::Method;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::{Call, Client, ErrorKind, Result};

/// What following a topic yields.
#[derive(Debug, Clone, PartialEq)]
pub enum TailItem {
    /// An event (`{topic, seq, id, routing_key, timestamp, posted_by, payload}`).
    Event(Value),
    /// The server says this stream is this many events behind.
    Lag(u64),
    /// The server cut the stream off; the client resumes after `resume_after` by itself.
    Cutoff {
        /// Why.
        reason: String,
        /// Where the stream resumes.
        resume_after: u64,
    },
    /// The connection dropped; the client reconnects and resumes after `after` (no gap, no
    /// duplicate).
    Reconnecting {
        /// The last sequence number seen.
        after: Option<u64>,
        /// What happened.
        reason: String,
    },
}

/// One server-sent event.
#[derive(Debug, Default, PartialEq)]
struct SseFrame {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

/// Splits SSE text into frames; keeps an unfinished frame for the next chunk. Every frame ends
/// at a blank line, so several events in one chunk stay several events.
#[derive(Default)]
struct SseParser {
    buffer: String,
}

impl SseParser {
    fn push(&mut self, chunk: &str) -> Vec<SseFrame> {
        self.buffer.push_str(&chunk.replace("\r\n", "\n"));
        let mut frames = Vec::new();
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut frame = SseFrame::default();
            let mut data = Vec::new();
            for line in block.lines() {
                if line.is_empty() || line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => frame.id = Some(value.to_owned()),
                    "event" => frame.event = Some(value.to_owned()),
                    "data" => data.push(value),
                    _ => {}
                }
            }
            if data.is_empty() && frame.id.is_none() {
                continue;
            }
            frame.data = data.join("\n");
            frames.push(frame);
        }
        frames
    }
}

impl Client {
    /// Every topic the user may read (`GET /topics`).
    pub async fn topics(&self) -> Result<Value> {
        self.get_value(self.url(&["topics"])).await
    }

    /// One topic (`GET /topics/{topic}`).
    pub async fn topic(&self, topic: &str) -> Result<Value> {
        self.get_value(self.url(&["topics", topic])).await
    }

    /// Creates a topic (`POST /topics` with `{name, description?, schema?, retention?, grants?}`).
    pub async fn create_topic(&self, topic: &Value) -> Result<Value> {
        let call = Call::new(Method::POST, self.url(&["topics"])).json(topic);
        self.json_call(call).await
    }

    /// Publishes one event (an object) or a batch (an array) (`POST /events`).
    pub async fn publish(&self, events: &Value) -> Result<Value> {
        let call = Call::new(Method::POST, self.url(&["events"])).json(events);
        self.json_call(call).await
    }

    async fn get_value(&self, url: reqwest::Url) -> Result<Value> {
        self.json_call(Call::new(Method::GET, url)).await
    }

    async fn json_call(&self, call: Call) -> Result<Value> {
        let url = call.url.to_string();
        let response = self.authorized(call).await?;
        crate::decode(response, &url).await
    }

    /// Follows `topic` live (`GET /events/{topic}/stream`), from after `after` or from now,
    /// keeping events whose routing key matches `pattern` (`*` one word, `#` any words). A
    /// dropped connection or a cut-off is resumed from the last event seen. Errors the server
    /// answers (no such topic, no access) end the stream.
    pub fn tail(
        &self,
        topic: &str,
        pattern: Option<&str>,
        after: Option<u64>,
    ) -> impl Stream<Item = Result<TailItem>> + Send + 'static {
        let (tx, rx) = mpsc::channel(1024);
        let client = self.clone();
        let topic = topic.to_owned();
        let pattern = pattern.map(str::to_owned);
        tokio::spawn(async move {
            client
                .tail_loop(&topic, pattern.as_deref(), after, tx)
                .await;
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }

    async fn tail_loop(
        &self,
        topic: &str,
        pattern: Option<&str>,
        mut after: Option<u64>,
        tx: mpsc::Sender<Result<TailItem>>,
    ) {
        let mut backoff = Duration::from_millis(250);
        loop {
            let mut url = self.url(&["events", topic, "stream"]);
            {
                let mut q = url.query_pairs_mut();
                if let Some(p) = pattern {
                    q.append_pair("routing_key", p);
                }
                if let Some(a) = after {
                    q.append_pair("after", &a.to_string());
                }
            }
            let reason = match self
                .authorized(Call::new(Method::GET, url).streaming())
                .await
            {
                Err(e) if e.kind() == ErrorKind::Connect => e.to_string(),
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                Ok(response) => {
                    backoff = Duration::from_millis(250);
                    let mut body = response.bytes_stream();
                    let mut parser = SseParser::default();
                    let mut reason = "the server closed the stream".to_owned();
                    'read: while let Some(chunk) = body.next().await {
                        let chunk = match chunk {
                            Ok(c) => c,
                            Err(e) => {
                                reason = format!("the connection failed: {e}");
                                break;
                            }
                        };
                        for frame in parser.push(&String::from_utf8_lossy(&chunk)) {
                            let item = match frame.event.as_deref() {
                                None | Some("message") => {
                                    match serde_json::from_str::<Value>(&frame.data) {
                                        Ok(v) => {
                                            if let Some(seq) = frame.id.and_then(|i| i.parse().ok())
                                            {
                                                after = Some(seq);
                                            }
                                            TailItem::Event(v)
                                        }
                                        Err(e) => {
                                            reason = format!(
                                                "the server sent an event that is not JSON: {e}"
                                            );
                                            break 'read;
                                        }
                                    }
                                }
                                Some("lag") => TailItem::Lag(
                                    serde_json::from_str::<Value>(&frame.data)
                                        .ok()
                                        .and_then(|v| v["behind"].as_u64())
                                        .unwrap_or(0),
                                ),
                                Some("cutoff") => {
                                    let v: Value =
                                        serde_json::from_str(&frame.data).unwrap_or(Value::Null);
                                    let resume_after =
                                        v["resume_after"].as_u64().or(after).unwrap_or(0);
                                    after = Some(resume_after);
                                    TailItem::Cutoff {
                                        reason: v["reason"].as_str().unwrap_or("").to_owned(),
                                        resume_after,
                                    }
                                }
                                Some(_) => continue,
                            };
                            if tx.send(Ok(item)).await.is_err() {
                                return;
                            }
                        }
                    }
                    reason
                }
            };
            if tx
                .send(Ok(TailItem::Reconnecting { after, reason }))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_at_blank_lines_even_within_one_chunk() {
        let mut p = SseParser::default();
        let frames =
            p.push("id: 1\ndata: {\"a\":1}\n\nid: 2\ndata: {\"a\":2}\n\n: keep-alive\n\nid: 3\nda");
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].id.as_deref(), Some("1"));
        assert_eq!(frames[1].data, "{\"a\":2}");
        let frames = p.push("ta: {\"a\":3}\r\n\r\nevent: lag\ndata: {\"behind\":5}\n\n");
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].data, "{\"a\":3}");
        assert_eq!(frames[1].event.as_deref(), Some("lag"));
    }
}
