//! `Shared` for [`Queue<T>`]: a `BaseManager` can serve an mproc queue
//! (Python's task master registering its task queue), reached through a
//! [`QueueProxy<T>`] exactly like a manager's own queue.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::objects::SLICE;
use super::proxy::QueueProxy;
use super::shared::{
    Call, CallError, DispatchResult, Shared, encode_result, py_error, py_type_error, remote,
};
use super::wire::{CallFailure, Failure};
use crate::channel::{GetTimeoutError, PutTimeoutError, Queue, TryGetError, TryPutError};
use crate::ipc::pickle::{self, Value};

/// The methods of Python's `queue.Queue` a Python client may call.
const PY_EXPOSED: &[&str] = &[
    "empty",
    "full",
    "get",
    "get_nowait",
    "put",
    "put_nowait",
    "qsize",
];

/// Python's `block` and `timeout` arguments: `None` to wait forever,
/// `Some(zero)` not to wait.
fn py_wait(block: Option<&Value>, timeout: Option<&Value>) -> Result<Option<Duration>, CallError> {
    let block = match block {
        None | Some(Value::Bool(true)) => true,
        Some(Value::Bool(false) | Value::None) => false,
        Some(Value::I64(n)) => *n != 0,
        Some(other) => return Err(py_type_error(format!("block must be a bool, not {other}"))),
    };
    if !block {
        return Ok(Some(Duration::ZERO));
    }
    let secs = match timeout {
        None | Some(Value::None) => return Ok(None),
        Some(Value::F64(f)) => *f,
        Some(Value::I64(n)) => *n as f64,
        Some(other) => {
            return Err(py_type_error(format!(
                "timeout must be a number, not {other}"
            )));
        }
    };
    if secs.is_nan() || secs < 0.0 {
        return Err(py_error(
            "builtins",
            "ValueError",
            "'timeout' must be a non-negative number",
        ));
    }
    Ok(Some(
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX),
    ))
}

fn empty() -> CallError {
    py_error("queue", "Empty", "the queue is empty")
}

fn full() -> CallError {
    py_error("queue", "Full", "the queue is full")
}

fn encode_item<T: Serialize>(item: &T) -> Result<Vec<u8>, CallError> {
    super::wire::encode_value(item).map_err(|e| CallError(CallFailure::new(Failure::Encode, e)))
}

/// Takes an item, waiting until `deadline` (forever without one) in slices,
/// and giving up if the caller goes away in between.
fn get_until<T>(
    q: &Queue<T>,
    deadline: Option<Instant>,
    call: &Call<'_>,
) -> Result<Option<T>, CallError>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    loop {
        let slice = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                left.min(SLICE)
            }
            None => SLICE,
        };
        match q.get_timeout(slice) {
            Ok(item) => return Ok(Some(item)),
            Err(GetTimeoutError::Timeout) => {
                if !call.client_alive() {
                    return Err(remote(
                        "the caller went away or the manager is shutting down",
                    ));
                }
            }
            Err(e) => return Err(remote(format!("queue: {e}"))),
        }
    }
}

impl<T> Shared for Queue<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    type Proxy = QueueProxy<T>;

    fn __dispatch(cell: &Mutex<Self>, call: &mut Call<'_>) -> DispatchResult {
        // The queue synchronises itself: work on a clone so that a blocking
        // `get` never holds up a `put`.
        let q = cell.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match call.method() {
            "put" => {
                let bytes: Vec<u8> = call.args()?;
                let item: T = super::wire::decode_value(&bytes).map_err(|e| {
                    CallError(CallFailure::new(Failure::Decode, format!("the item: {e}")))
                })?;
                q.put(item).map_err(|e| remote(format!("queue: {e}")))?;
                encode_result(&())
            }
            "get" => {
                let () = call.args()?;
                let item = get_until(&q, None, call)?.expect("waited without a deadline");
                encode_result(&encode_item(&item)?)
            }
            "get_timeout" => {
                let nanos: u64 = call.args()?;
                let deadline = Instant::now().checked_add(Duration::from_nanos(nanos));
                let item = get_until(&q, deadline, call)?;
                encode_result(&item.map(|i| encode_item(&i)).transpose()?)
            }
            "try_get" => match q.try_get() {
                Ok(item) => encode_result(&Some(encode_item(&item)?)),
                Err(TryGetError::Empty) => encode_result(&None::<Vec<u8>>),
                Err(e) => Err(remote(format!("queue: {e}"))),
            },
            "len" => encode_result(&(q.len() as u64)),
            _ => Err(call.unknown_method()),
        }
    }

    fn __exposed() -> &'static [&'static str] {
        PY_EXPOSED
    }

    /// Python's `queue.Queue` methods; an item is a `T` or a `TypeError`.
    fn __dispatch_python(cell: &Mutex<Self>, call: &mut Call<'_>) -> DispatchResult {
        let q = cell.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let a = call.python().expect("a Python client's call");
        let m = call.method();
        match m {
            "put" | "put_nowait" => {
                let wait = if m == "put" {
                    a.expect(m, &["item", "block", "timeout"], 1)?;
                    py_wait(a.get(1, "block"), a.get(2, "timeout"))?
                } else {
                    a.expect(m, &["item"], 1)?;
                    Some(Duration::ZERO)
                };
                let v = a.get(0, "item").cloned().unwrap_or(Value::None);
                let item: T = pickle::from_value(v.clone()).map_err(|e| {
                    py_type_error(format!(
                        "{v} is not a `{}`: {e}",
                        std::any::type_name::<T>()
                    ))
                })?;
                match wait {
                    None => q.put(item).map_err(|e| remote(format!("queue: {e}")))?,
                    Some(d) if d.is_zero() => q.try_put(item).map_err(|e| match e {
                        TryPutError::Full(_) => full(),
                        e => remote(format!("queue: {e}")),
                    })?,
                    Some(d) => q.put_timeout(item, d).map_err(|e| match e {
                        PutTimeoutError::Timeout(_) => full(),
                        e => remote(format!("queue: {e}")),
                    })?,
                }
                call.reply(&())
            }
            "get" | "get_nowait" => {
                let wait = if m == "get" {
                    a.expect(m, &["block", "timeout"], 0)?;
                    py_wait(a.get(0, "block"), a.get(1, "timeout"))?
                } else {
                    a.expect(m, &[], 0)?;
                    Some(Duration::ZERO)
                };
                let item = match wait {
                    Some(d) if d.is_zero() => match q.try_get() {
                        Ok(item) => Some(item),
                        Err(TryGetError::Empty) => None,
                        Err(e) => return Err(remote(format!("queue: {e}"))),
                    },
                    Some(d) => get_until(&q, Instant::now().checked_add(d), call)?,
                    None => get_until(&q, None, call)?,
                };
                match item {
                    Some(item) => call.reply(&item),
                    None => Err(empty()),
                }
            }
            "qsize" => {
                a.expect(m, &[], 0)?;
                call.reply(&(q.len() as u64))
            }
            "empty" => {
                a.expect(m, &[], 0)?;
                call.reply(&q.is_empty())
            }
            "full" => {
                a.expect(m, &[], 0)?;
                call.reply(&q.is_full())
            }
            _ => Err(call.unknown_method()),
        }
    }
}
