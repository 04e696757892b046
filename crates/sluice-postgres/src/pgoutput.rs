//! The `pgoutput` logical replication message format (PostgreSQL's "Logical Replication Message
//! Formats"), protocol version 1 and 2 without streamed transactions: a decoder for what a slot
//! sends and, for tests, the matching encoder.
//!
//! Values inside tuples are kept as the bytes the server sent (sliced out of the message, never
//! copied); [`crate::capture`] decodes them with the binary COPY decoders of [`crate::copy`].

use bytes::{Buf, Bytes};
#[cfg(test)]
use bytes::{BufMut, BytesMut};

/// A malformed or unsupported message, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

type Decoded<T> = Result<T, DecodeError>;

/// One column of a tuple as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Field {
    /// SQL NULL (`n`).
    Null,
    /// An unchanged TOASTed value the server did not send (`u`).
    Unchanged,
    /// A value in text format (`t`).
    Text(Bytes),
    /// A value in binary (send/recv) format (`b`).
    Binary(Bytes),
}

/// One column of a relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RelationColumn {
    /// Whether the column is part of the replica identity (flag bit 1).
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

/// A relation's description, sent before its first change in a session and after it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relation {
    pub oid: u32,
    /// The schema (`pg_catalog` is sent as an empty string).
    pub namespace: String,
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

/// The old row image of an update or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OldTuple {
    /// Only the replica identity columns (`K`).
    Key(Vec<Field>),
    /// The whole old row (`O`, `REPLICA IDENTITY FULL`).
    Old(Vec<Field>),
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message {
    Begin {
        final_lsn: u64,
        /// Microseconds since 2000-01-01 UTC.
        commit_time: i64,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: u64,
        end_lsn: u64,
        commit_time: i64,
    },
    Origin {
        commit_lsn: u64,
        name: String,
    },
    Relation(Relation),
    Type {
        oid: u32,
        namespace: String,
        name: String,
    },
    Insert {
        relation: u32,
        new: Vec<Field>,
    },
    Update {
        relation: u32,
        old: Option<OldTuple>,
        new: Vec<Field>,
    },
    Delete {
        relation: u32,
        old: OldTuple,
    },
    Truncate {
        /// 1 `CASCADE`, 2 `RESTART IDENTITY`.
        options: u8,
        relations: Vec<u32>,
    },
    /// A logical decoding message (`pg_logical_emit_message`).
    Logical {
        transactional: bool,
        lsn: u64,
        prefix: String,
        content: Bytes,
    },
}

/// A cursor over one message.
struct Reader {
    buf: Bytes,
}

impl Reader {
    fn need(&self, n: usize, what: &str) -> Decoded<()> {
        if self.buf.remaining() < n {
            return Err(DecodeError(format!(
                "a pgoutput message ends inside its {what}"
            )));
        }
        Ok(())
    }

    fn u8(&mut self, what: &str) -> Decoded<u8> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }

    fn i16(&mut self, what: &str) -> Decoded<i16> {
        self.need(2, what)?;
        Ok(self.buf.get_i16())
    }

    fn i32(&mut self, what: &str) -> Decoded<i32> {
        self.need(4, what)?;
        Ok(self.buf.get_i32())
    }

    fn u32(&mut self, what: &str) -> Decoded<u32> {
        self.need(4, what)?;
        Ok(self.buf.get_u32())
    }

    fn u64(&mut self, what: &str) -> Decoded<u64> {
        self.need(8, what)?;
        Ok(self.buf.get_u64())
    }

    fn i64(&mut self, what: &str) -> Decoded<i64> {
        self.need(8, what)?;
        Ok(self.buf.get_i64())
    }

    fn bytes(&mut self, n: usize, what: &str) -> Decoded<Bytes> {
        self.need(n, what)?;
        Ok(self.buf.split_to(n))
    }

    /// A NUL-terminated UTF-8 string.
    fn string(&mut self, what: &str) -> Decoded<String> {
        let end =
            self.buf.iter().position(|&b| b == 0).ok_or_else(|| {
                DecodeError(format!("the {what} of a pgoutput message is not ended"))
            })?;
        let text = self.buf.split_to(end);
        self.buf.advance(1);
        String::from_utf8(text.to_vec())
            .map_err(|_| DecodeError(format!("the {what} of a pgoutput message is not UTF-8")))
    }

    fn tuple(&mut self) -> Decoded<Vec<Field>> {
        let count = self.i16("tuple column count")?;
        let count = usize::try_from(count)
            .map_err(|_| DecodeError(format!("a tuple of {count} columns")))?;
        let mut fields = Vec::with_capacity(count);
        for _ in 0..count {
            let field = match self.u8("tuple column kind")? {
                b'n' => Field::Null,
                b'u' => Field::Unchanged,
                kind @ (b't' | b'b') => {
                    let len = self.i32("tuple value length")?;
                    let len = usize::try_from(len)
                        .map_err(|_| DecodeError(format!("a tuple value of {len} bytes")))?;
                    let value = self.bytes(len, "tuple value")?;
                    if kind == b't' {
                        Field::Text(value)
                    } else {
                        Field::Binary(value)
                    }
                }
                other => {
                    return Err(DecodeError(format!(
                        "unknown tuple column kind {:?}",
                        other as char
                    )));
                }
            };
            fields.push(field);
        }
        Ok(fields)
    }

    fn old_tuple(&mut self, kind: u8) -> Decoded<OldTuple> {
        match kind {
            b'K' => Ok(OldTuple::Key(self.tuple()?)),
            b'O' => Ok(OldTuple::Old(self.tuple()?)),
            other => Err(DecodeError(format!(
                "unknown old tuple kind {:?}",
                other as char
            ))),
        }
    }

    fn new_marker(&mut self) -> Decoded<()> {
        match self.u8("new tuple marker")? {
            b'N' => Ok(()),
            other => Err(DecodeError(format!(
                "expected a new tuple (N), found {:?}",
                other as char
            ))),
        }
    }
}

/// Decodes one message (the payload of one XLogData).
pub(crate) fn decode(data: Bytes) -> Decoded<Message> {
    let mut r = Reader { buf: data };
    let tag = r.u8("tag")?;
    let message = match tag {
        b'B' => Message::Begin {
            final_lsn: r.u64("final LSN")?,
            commit_time: r.i64("commit time")?,
            xid: r.u32("transaction id")?,
        },
        b'C' => Message::Commit {
            flags: r.u8("flags")?,
            commit_lsn: r.u64("commit LSN")?,
            end_lsn: r.u64("end LSN")?,
            commit_time: r.i64("commit time")?,
        },
        b'O' => Message::Origin {
            commit_lsn: r.u64("origin LSN")?,
            name: r.string("origin name")?,
        },
        b'R' => {
            let oid = r.u32("relation oid")?;
            let namespace = r.string("namespace")?;
            let name = r.string("relation name")?;
            let replica_identity = r.u8("replica identity")?;
            let count = r.i16("column count")?;
            let count = usize::try_from(count)
                .map_err(|_| DecodeError(format!("a relation of {count} columns")))?;
            let mut columns = Vec::with_capacity(count);
            for _ in 0..count {
                columns.push(RelationColumn {
                    key: r.u8("column flags")? & 1 == 1,
                    name: r.string("column name")?,
                    type_oid: r.u32("column type")?,
                    type_modifier: r.i32("column type modifier")?,
                });
            }
            Message::Relation(Relation {
                oid,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'Y' => Message::Type {
            oid: r.u32("type oid")?,
            namespace: r.string("type namespace")?,
            name: r.string("type name")?,
        },
        b'I' => {
            let relation = r.u32("relation oid")?;
            r.new_marker()?;
            Message::Insert {
                relation,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let relation = r.u32("relation oid")?;
            let kind = r.u8("tuple kind")?;
            let old = if kind == b'N' {
                None
            } else {
                let old = r.old_tuple(kind)?;
                r.new_marker()?;
                Some(old)
            };
            Message::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let relation = r.u32("relation oid")?;
            let kind = r.u8("tuple kind")?;
            Message::Delete {
                relation,
                old: r.old_tuple(kind)?,
            }
        }
        b'T' => {
            let count = r.u32("relation count")?;
            let options = r.u8("truncate options")?;
            let count = usize::try_from(count).unwrap_or(usize::MAX);
            r.need(count.saturating_mul(4), "relation oids")?;
            let mut relations = Vec::with_capacity(count);
            for _ in 0..count {
                relations.push(r.u32("relation oid")?);
            }
            Message::Truncate { options, relations }
        }
        b'M' => {
            let flags = r.u8("message flags")?;
            let lsn = r.u64("message LSN")?;
            let prefix = r.string("message prefix")?;
            let len = r.i32("message length")?;
            let len = usize::try_from(len)
                .map_err(|_| DecodeError(format!("a message of {len} bytes")))?;
            Message::Logical {
                transactional: flags & 1 == 1,
                lsn,
                prefix,
                content: r.bytes(len, "message content")?,
            }
        }
        b'S' | b'E' | b'c' | b'A' => {
            return Err(DecodeError(format!(
                "pgoutput sent a streamed-transaction message ({:?}), which sluice never asks for",
                tag as char
            )));
        }
        b'b' | b'P' | b'K' | b'r' | b'p' => {
            return Err(DecodeError(format!(
                "pgoutput sent a two-phase commit message ({:?}), which sluice never asks for",
                tag as char
            )));
        }
        other => {
            return Err(DecodeError(format!(
                "unknown pgoutput message {:?}",
                other as char
            )));
        }
    };
    if r.buf.has_remaining() {
        return Err(DecodeError(format!(
            "{} bytes after a pgoutput {:?} message",
            r.buf.remaining(),
            tag as char
        )));
    }
    Ok(message)
}

/// Encodes a message as the server would send it (the property tests check the decoder by it).
#[cfg(test)]
pub(crate) fn encode(message: &Message) -> BytesMut {
    let mut out = BytesMut::new();
    let string = |out: &mut BytesMut, s: &str| {
        out.put_slice(s.as_bytes());
        out.put_u8(0);
    };
    let tuple = |out: &mut BytesMut, fields: &[Field]| {
        out.put_i16(fields.len() as i16);
        for field in fields {
            match field {
                Field::Null => out.put_u8(b'n'),
                Field::Unchanged => out.put_u8(b'u'),
                Field::Text(b) | Field::Binary(b) => {
                    out.put_u8(if matches!(field, Field::Text(_)) {
                        b't'
                    } else {
                        b'b'
                    });
                    out.put_i32(b.len() as i32);
                    out.put_slice(b);
                }
            }
        }
    };
    let old_tuple = |out: &mut BytesMut, old: &OldTuple| match old {
        OldTuple::Key(fields) => {
            out.put_u8(b'K');
            tuple(out, fields);
        }
        OldTuple::Old(fields) => {
            out.put_u8(b'O');
            tuple(out, fields);
        }
    };
    match message {
        Message::Begin {
            final_lsn,
            commit_time,
            xid,
        } => {
            out.put_u8(b'B');
            out.put_u64(*final_lsn);
            out.put_i64(*commit_time);
            out.put_u32(*xid);
        }
        Message::Commit {
            flags,
            commit_lsn,
            end_lsn,
            commit_time,
        } => {
            out.put_u8(b'C');
            out.put_u8(*flags);
            out.put_u64(*commit_lsn);
            out.put_u64(*end_lsn);
            out.put_i64(*commit_time);
        }
        Message::Origin { commit_lsn, name } => {
            out.put_u8(b'O');
            out.put_u64(*commit_lsn);
            string(&mut out, name);
        }
        Message::Relation(rel) => {
            out.put_u8(b'R');
            out.put_u32(rel.oid);
            string(&mut out, &rel.namespace);
            string(&mut out, &rel.name);
            out.put_u8(rel.replica_identity);
            out.put_i16(rel.columns.len() as i16);
            for c in &rel.columns {
                out.put_u8(u8::from(c.key));
                string(&mut out, &c.name);
                out.put_u32(c.type_oid);
                out.put_i32(c.type_modifier);
            }
        }
        Message::Type {
            oid,
            namespace,
            name,
        } => {
            out.put_u8(b'Y');
            out.put_u32(*oid);
            string(&mut out, namespace);
            string(&mut out, name);
        }
        Message::Insert { relation, new } => {
            out.put_u8(b'I');
            out.put_u32(*relation);
            out.put_u8(b'N');
            tuple(&mut out, new);
        }
        Message::Update { relation, old, new } => {
            out.put_u8(b'U');
            out.put_u32(*relation);
            if let Some(old) = old {
                old_tuple(&mut out, old);
            }
            out.put_u8(b'N');
            tuple(&mut out, new);
        }
        Message::Delete { relation, old } => {
            out.put_u8(b'D');
            out.put_u32(*relation);
            old_tuple(&mut out, old);
        }
        Message::Truncate { options, relations } => {
            out.put_u8(b'T');
            out.put_u32(relations.len() as u32);
            out.put_u8(*options);
            for r in relations {
                out.put_u32(*r);
            }
        }
        Message::Logical {
            transactional,
            lsn,
            prefix,
            content,
        } => {
            out.put_u8(b'M');
            out.put_u8(u8::from(*transactional));
            out.put_u64(*lsn);
            string(&mut out, prefix);
            out.put_i32(content.len() as i32);
            out.put_slice(content);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_ \u{e9}\u{1F600}]{0,12}"
    }

    fn field() -> impl Strategy<Value = Field> {
        prop_oneof![
            Just(Field::Null),
            Just(Field::Unchanged),
            proptest::collection::vec(any::<u8>(), 0..40)
                .prop_map(|b| Field::Binary(Bytes::from(b))),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Field::Text(Bytes::from(b))),
        ]
    }

    fn tuple() -> impl Strategy<Value = Vec<Field>> {
        proptest::collection::vec(field(), 0..8)
    }

    fn old_tuple() -> impl Strategy<Value = OldTuple> {
        prop_oneof![
            tuple().prop_map(OldTuple::Key),
            tuple().prop_map(OldTuple::Old)
        ]
    }

    fn message() -> impl Strategy<Value = Message> {
        let column = (any::<bool>(), name(), any::<u32>(), any::<i32>()).prop_map(
            |(key, name, type_oid, type_modifier)| RelationColumn {
                key,
                name,
                type_oid,
                type_modifier,
            },
        );
        prop_oneof![
            (any::<u64>(), any::<i64>(), any::<u32>()).prop_map(|(final_lsn, commit_time, xid)| {
                Message::Begin {
                    final_lsn,
                    commit_time,
                    xid,
                }
            }),
            (any::<u8>(), any::<u64>(), any::<u64>(), any::<i64>()).prop_map(
                |(flags, commit_lsn, end_lsn, commit_time)| Message::Commit {
                    flags,
                    commit_lsn,
                    end_lsn,
                    commit_time,
                }
            ),
            (any::<u64>(), name())
                .prop_map(|(commit_lsn, name)| Message::Origin { commit_lsn, name }),
            (
                any::<u32>(),
                name(),
                name(),
                prop_oneof![Just(b'd'), Just(b'n'), Just(b'f'), Just(b'i')],
                proptest::collection::vec(column, 0..8)
            )
                .prop_map(|(oid, namespace, name, replica_identity, columns)| {
                    Message::Relation(Relation {
                        oid,
                        namespace,
                        name,
                        replica_identity,
                        columns,
                    })
                }),
            (any::<u32>(), name(), name()).prop_map(|(oid, namespace, name)| Message::Type {
                oid,
                namespace,
                name
            }),
            (any::<u32>(), tuple()).prop_map(|(relation, new)| Message::Insert { relation, new }),
            (any::<u32>(), proptest::option::of(old_tuple()), tuple())
                .prop_map(|(relation, old, new)| Message::Update { relation, old, new }),
            (any::<u32>(), old_tuple())
                .prop_map(|(relation, old)| Message::Delete { relation, old }),
            (any::<u8>(), proptest::collection::vec(any::<u32>(), 0..6))
                .prop_map(|(options, relations)| Message::Truncate { options, relations }),
            (
                any::<bool>(),
                any::<u64>(),
                name(),
                proptest::collection::vec(any::<u8>(), 0..30)
            )
                .prop_map(|(transactional, lsn, prefix, content)| Message::Logical {
                    transactional,
                    lsn,
                    prefix,
                    content: Bytes::from(content),
                }),
        ]
    }

    proptest! {
        #[test]
        fn every_message_decodes_to_what_was_encoded(m in message()) {
            let bytes = encode(&m).freeze();
            prop_assert_eq!(decode(bytes).unwrap(), m);
        }

        #[test]
        fn a_cut_message_is_an_error_never_a_panic(m in message(), cut in any::<prop::sample::Index>()) {
            let bytes = encode(&m).freeze();
            let at = cut.index(bytes.len());
            prop_assert!(decode(bytes.slice(..at)).is_err());
        }

        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(Bytes::from(b));
        }
    }

    #[test]
    fn an_insert_as_the_server_sends_it() {
        // I, relation 16385, N, 2 columns: binary int4 7, NULL.
        let wire: &[u8] = &[
            b'I', 0, 0, 0x40, 0x01, b'N', 0, 2, b'b', 0, 0, 0, 4, 0, 0, 0, 7, b'n',
        ];
        assert_eq!(
            decode(Bytes::from_static(wire)).unwrap(),
            Message::Insert {
                relation: 16385,
                new: vec![
                    Field::Binary(Bytes::from_static(&[0, 0, 0, 7])),
                    Field::Null
                ],
            }
        );
    }

    #[test]
    fn streamed_transactions_are_refused() {
        let err = decode(Bytes::from_static(&[b'S', 0, 0, 0, 1, 1])).unwrap_err();
        assert!(err.0.contains("streamed"), "{err}");
    }
}
