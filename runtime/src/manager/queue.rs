//! `Shared` for [`Queue<T>`]: a `BaseManager` can serve an mproc queue
//! (Python's task master registering its task queue), reached through a
//! [`QueueProxy<T>`] exactly like a manager's own queue.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::objects::SLICE;
use super::proxy::QueueProxy;
use super::shared::{Call, CallError, DispatchResult, Shared, encode_result, remote};
use super::wire::{CallFailure, Failure};
use crate::channel::{GetTimeoutError, Queue, TryGetError};

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
}
