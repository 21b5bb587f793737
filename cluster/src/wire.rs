//! Keys, stream entries and the Redis connection, shared by callers and
//! workers. The layout is described in the crate's README.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use redis::{Connection, RedisError, Value};

use crate::ClusterError;

/// The consumer group every worker of a build reads through.
pub(crate) const GROUP: &str = "workers";

/// The task stream of one build.
pub(crate) fn tasks_key(ns: &str, build: u64) -> String {
    format!("{ns}:tasks:{build:016x}")
}

/// A caller's result stream.
pub(crate) fn results_key(ns: &str, caller: &str) -> String {
    format!("{ns}:results:{caller}")
}

/// Where tasks that failed every delivery go.
pub(crate) fn dead_key(ns: &str) -> String {
    format!("{ns}:dead")
}

/// The build fingerprint: this binary's task table and the tag.
pub(crate) fn build_id(tag: &str) -> u64 {
    let mut h = mproc_runtime::__private::task_table_fingerprint();
    for b in tag.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A fresh random identifier (128 bits, hex), for callers and consumers.
pub(crate) fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let word = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    };
    format!("{:016x}{:016x}", word(1), word(2))
}

/// One stream entry: its id and its fields.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) fields: Vec<(String, Vec<u8>)>,
}

impl Entry {
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub(crate) fn num(&self, name: &str) -> Option<u64> {
        self.text(name).and_then(|t| t.parse().ok())
    }
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b).ok())
}

/// Parses `[[id, [field, value, ...]], ...]` (XRANGE, XCLAIM); deleted
/// entries (`[id, nil]`) are left out.
pub(crate) fn parse_entries(v: &Value) -> Vec<Entry> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else {
                return None;
            };
            let id = text(pair.first()?)?;
            let Value::Array(kv) = pair.get(1)? else {
                return None;
            };
            let fields = kv
                .chunks(2)
                .filter_map(|c| Some((text(c.first()?)?, bytes(c.get(1)?)?)))
                .collect();
            Some(Entry { id, fields })
        })
        .collect()
}

/// Parses an XREAD/XREADGROUP reply for one stream (nil: nothing came).
pub(crate) fn parse_read(v: &Value) -> Vec<Entry> {
    match v {
        Value::Array(streams) => streams
            .iter()
            .flat_map(|s| match s {
                Value::Array(pair) => pair.get(1).map(parse_entries).unwrap_or_default(),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.iter().flat_map(|(_, e)| parse_entries(e)).collect(),
        _ => Vec::new(),
    }
}

/// Parses the extended XPENDING reply: `(id, consumer, idle ms, deliveries)`.
pub(crate) fn parse_pending(v: &Value) -> Vec<(String, String, u64, u64)> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(f) = item else { return None };
            let num = |v: &Value| match v {
                Value::Int(i) => Some(*i as u64),
                other => text(other)?.parse().ok(),
            };
            Some((
                text(f.first()?)?,
                text(f.get(1)?)?,
                num(f.get(2)?)?,
                num(f.get(3)?)?,
            ))
        })
        .collect()
}

/// Whether an error means the connection is gone (worth reconnecting),
/// rather than a refused command.
fn is_connection_error(e: &RedisError) -> bool {
    // The redis crate counts a refused password as "reconnect"; for us it
    // is a refusal.
    if e.kind() == redis::ErrorKind::AuthenticationFailed {
        return false;
    }
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || e.to_string().contains("LOADING")
}

/// A connection to Redis that reconnects: a command that meets a dropped
/// connection is tried again on a new one, with growing pauses, for up to
/// the reconnect window.
pub(crate) struct Link {
    client: redis::Client,
    con: Option<Connection>,
    window: Duration,
    /// Bumped at each new connection after the first.
    pub(crate) reconnects: u64,
    connected_once: bool,
}

impl Link {
    pub(crate) fn open(url: &str, window: Duration) -> Result<Link, ClusterError> {
        let client = redis::Client::open(url)?;
        let mut link = Link {
            client,
            con: None,
            window,
            reconnects: 0,
            connected_once: false,
        };
        link.run(|c| redis::cmd("PING").query::<Value>(c))?;
        Ok(link)
    }

    /// Runs `f` on the connection, reconnecting as needed. A refused
    /// command is returned at once.
    pub(crate) fn run<T>(
        &mut self,
        mut f: impl FnMut(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, ClusterError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            if self.con.is_none() {
                match self
                    .client
                    .get_connection_with_timeout(Duration::from_secs(2))
                {
                    Ok(c) => {
                        if self.connected_once {
                            self.reconnects += 1;
                        }
                        self.connected_once = true;
                        self.con = Some(c);
                    }
                    // A refusal (a wrong password, a bad URL) will not go
                    // away by trying again.
                    Err(e) if !is_connection_error(&e) || start.elapsed() >= self.window => {
                        return Err(e.into());
                    }
                    Err(_) => {}
                }
            }
            if let Some(con) = self.con.as_mut() {
                match f(con) {
                    Ok(v) => return Ok(v),
                    Err(e) if !is_connection_error(&e) => return Err(e.into()),
                    Err(e) => {
                        self.con = None;
                        if start.elapsed() >= self.window {
                            return Err(e.into());
                        }
                    }
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Creates consumer group `group` of `key` (and the stream) unless it is
    /// there.
    pub(crate) fn ensure_group(&mut self, key: &str, group: &str) -> Result<(), ClusterError> {
        self.run(|c| {
            match redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(key)
                .arg(group)
                .arg("0")
                .arg("MKSTREAM")
                .query::<Value>(c)
            {
                Err(e) if e.code() == Some("BUSYGROUP") => Ok(Value::Okay),
                other => other,
            }
        })
        .map(drop)
    }
}

/// One field of a stream entry: its name and its value, borrowed where the
/// value is large.
pub(crate) type Field<'a> = (&'static str, Cow<'a, [u8]>);

fn number(n: impl ToString) -> Cow<'static, [u8]> {
    n.to_string().into_bytes().into()
}

/// A batch of items of one task, as a task stream entry.
#[derive(Debug, Clone)]
pub(crate) struct TaskMsg {
    /// The caller's id: its results go to `results_key(ns, caller)`.
    pub(crate) caller: String,
    /// The caller's number for the batch.
    pub(crate) batch: u64,
    /// The index of the first item here within the batch (a batch split
    /// after a crash travels as several entries).
    pub(crate) start: u32,
    pub(crate) task: String,
    /// The task's type fingerprint.
    pub(crate) fingerprint: u64,
    /// Deliveries that already failed (carried over when an entry is split
    /// or given back).
    pub(crate) tries: u32,
    pub(crate) max_deliveries: u32,
    pub(crate) timeout_ms: u64,
    /// Where each item's bytes end in `items`.
    pub(crate) ends: Vec<u32>,
    /// The encoded `(task, args)` of each item, back to back.
    pub(crate) items: Vec<u8>,
    /// Why the last delivery failed, if one did.
    pub(crate) last_error: String,
}

impl TaskMsg {
    /// The fields of the stream entry (the items borrowed, not copied).
    pub(crate) fn fields(&self) -> Vec<Field<'_>> {
        let ends: Vec<u8> = self.ends.iter().flat_map(|e| e.to_le_bytes()).collect();
        vec![
            ("c", self.caller.as_bytes().into()),
            ("b", number(self.batch)),
            ("s", number(self.start)),
            ("t", self.task.as_bytes().into()),
            ("f", number(self.fingerprint)),
            ("x", number(self.tries)),
            ("m", number(self.max_deliveries)),
            ("d", number(self.timeout_ms)),
            ("e", self.last_error.as_bytes().into()),
            ("o", ends.into()),
            ("p", self.items.as_slice().into()),
        ]
    }

    pub(crate) fn from_entry(e: &Entry) -> Option<TaskMsg> {
        let ends: Vec<u32> = e
            .get("o")?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let items = e.get("p")?.to_vec();
        // Ends must grow and stay within the bytes.
        let mut last = 0;
        for &end in &ends {
            if end < last || end as usize > items.len() {
                return None;
            }
            last = end;
        }
        Some(TaskMsg {
            caller: e.text("c")?.to_owned(),
            batch: e.num("b")?,
            start: u32::try_from(e.num("s")?).ok()?,
            task: e.text("t")?.to_owned(),
            fingerprint: e.num("f")?,
            tries: u32::try_from(e.num("x")?).ok()?,
            max_deliveries: u32::try_from(e.num("m")?).ok()?,
            timeout_ms: e.num("d")?,
            last_error: e.text("e").unwrap_or("").to_owned(),
            ends,
            items,
        })
    }

    /// How many items the entry holds.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The encoded items, one slice each.
    pub(crate) fn item_slices(&self) -> Vec<&[u8]> {
        let mut from = 0usize;
        self.ends
            .iter()
            .map(|&end| {
                let s = &self.items[from..end as usize];
                from = end as usize;
                s
            })
            .collect()
    }

    /// Item `i` alone, as its own entry.
    pub(crate) fn single(&self, i: usize) -> TaskMsg {
        let item = self.item_slices()[i].to_vec();
        TaskMsg {
            start: self.start + i as u32,
            ends: vec![item.len() as u32],
            items: item,
            ..self.clone()
        }
    }
}

/// Adds `XADD key * fields...` to a pipeline (with `NOMKSTREAM` when the
/// stream must already exist, and an approximate length cap when given).
pub(crate) fn xadd(
    pipe: &mut redis::Pipeline,
    key: &str,
    must_exist: bool,
    maxlen: Option<usize>,
    fields: &[Field<'_>],
) {
    let c = pipe.cmd("XADD").arg(key);
    if must_exist {
        c.arg("NOMKSTREAM");
    }
    if let Some(n) = maxlen {
        c.arg("MAXLEN").arg("~").arg(n);
    }
    c.arg("*");
    for (k, v) in fields {
        c.arg(*k).arg(v.as_ref());
    }
}

/// One answer for items `start..start + count` of a batch, as a result
/// stream entry: the encoded chunk reply, or a failure for all of them.
pub(crate) struct ResultMsg {
    pub(crate) batch: u64,
    pub(crate) start: u32,
    pub(crate) count: u32,
    pub(crate) outcome: Result<Vec<u8>, crate::error::Failure>,
}

impl ResultMsg {
    pub(crate) fn fields(&self) -> Vec<Field<'_>> {
        let (kind, payload): (&str, Cow<'_, [u8]>) = match &self.outcome {
            Ok(bytes) => ("ok", bytes.as_slice().into()),
            Err(f) => (
                "err",
                mproc_runtime::codec::encode(f).unwrap_or_default().into(),
            ),
        };
        vec![
            ("b", number(self.batch)),
            ("s", number(self.start)),
            ("n", number(self.count)),
            ("k", kind.as_bytes().into()),
            ("p", payload),
        ]
    }

    pub(crate) fn from_entry(e: &Entry) -> Option<ResultMsg> {
        let payload = e.get("p")?.to_vec();
        let outcome = match e.text("k")? {
            "ok" => Ok(payload),
            _ => Err(mproc_runtime::codec::decode(&payload).unwrap_or_else(|m| {
                crate::error::Failure::Decode(format!("an unreadable failure report: {m}"))
            })),
        };
        Some(ResultMsg {
            batch: e.num("b")?,
            start: u32::try_from(e.num("s")?).ok()?,
            count: u32::try_from(e.num("n")?).ok()?,
            outcome,
        })
    }
}
