//! A Python client's connection: CPython's manager protocol.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use super::super::conn::Stream;
use super::super::server::ServerState;
use super::super::shared::{Call, CallError, MakeArgs, Object, PyArgs};
use super::super::wire::{self, CallFailure, Failure, FrameDecoder};
use crate::ipc::pickle::{self, Value};
use crate::sys::AsRawFd;

// ----- the connection -----

/// Serves a Python client on `stream`, whose first request is `first`.
pub(crate) fn serve(
    state: &ServerState,
    conn: u64,
    stream: &mut Stream,
    decoder: &mut FrameDecoder,
    first: Vec<u8>,
    alive: &dyn Fn() -> bool,
    cache: &mut HashMap<u64, Arc<dyn Object>>,
) -> io::Result<()> {
    // The server's connection number, in the 16 bits `LAST_REPLY` keeps.
    let me = conn & 0xffff;
    let mut frame = first;
    loop {
        let reply = request(state, conn, &frame, alive, cache);
        wire::write_frame(stream, &reply)?;
        replied(me);
        // A client's next call usually comes a few microseconds after our
        // reply: look for it under the one wait policy before sleeping
        // in `read` (a wake-up costs more than the call).
        if !decoder.in_frame() {
            spin_for_request(stream, me);
        }
        match decoder.read_frame(stream)? {
            Some(f) => frame = f,
            None => return Ok(()),
        }
    }
}

/// Connection threads spinning for their next request right now.
static SPINNING: AtomicUsize = AtomicUsize::new(0);
/// Which connection replied last, and when: its number in the top 16
/// bits, microseconds since `EPOCH` below.
static LAST_REPLY: AtomicU64 = AtomicU64::new(0);
static EPOCH: OnceLock<Instant> = OnceLock::new();

const TIME_BITS: u32 = 48;

fn micros() -> u64 {
    let t = EPOCH.get_or_init(Instant::now).elapsed().as_micros();
    (t as u64) & ((1 << TIME_BITS) - 1)
}

/// Notes that connection `me` has just replied.
fn replied(me: u64) {
    LAST_REPLY.store((me << TIME_BITS) | micros(), Ordering::Relaxed);
}

/// Waits for the next request under the one wait policy, so that a client
/// that calls again at once finds this thread awake (a wake-up costs more
/// than the call). Spinning takes a CPU, so it is skipped when another
/// connection has replied within the last few spin periods (clients are
/// then keeping the CPUs busy, and a waiting thread would take time they
/// need), and at most half the CPUs' worth of connections spin at once.
fn spin_for_request(stream: &Stream, me: u64) {
    let last = LAST_REPLY.load(Ordering::Relaxed);
    let recent = micros().saturating_sub(last & ((1 << TIME_BITS) - 1))
        < 4 * crate::wait::SPIN_FOR.as_micros() as u64;
    if last >> TIME_BITS != me && recent {
        return;
    }
    let most = (crate::sys::usable_cpus() / 2).max(1);
    if SPINNING.fetch_add(1, Ordering::Relaxed) < most {
        let fd = stream.fd().as_raw_fd();
        crate::wait::spin(&crate::wait::Wait::Forever, || {
            let mut p = [crate::sys::PollFd::readable(fd)];
            crate::sys::poll(&mut p, Some(std::time::Duration::ZERO))
                .is_ok_and(|_| p[0].fired())
                .then_some(())
        });
    }
    SPINNING.fetch_sub(1, Ordering::Relaxed);
}

/// `('#TRACEBACK', text)`: a `RemoteError` in the client.
fn traceback(text: &str) -> Vec<u8> {
    let t = pickle::encode(text).expect("a str pickles");
    pickle::tagged("#TRACEBACK", pickle::body(&t))
}

/// `('#RETURN', value)`, from a whole pickle of the value.
fn returned(value: &[u8]) -> Vec<u8> {
    pickle::tagged("#RETURN", pickle::body(value))
}

/// Answers one request `(ident, methodname, args, kwds)`.
fn request(
    state: &ServerState,
    conn: u64,
    frame: &[u8],
    alive: &dyn Fn() -> bool,
    cache: &mut HashMap<u64, Arc<dyn Object>>,
) -> Vec<u8> {
    let req = match pickle::decode_value(frame) {
        Ok(v) => v,
        Err(e) => {
            log::warn!(target: "mproc", "manager: refused a Python request: {e}");
            return traceback(&format!("mproc's manager refused the request: {e}"));
        }
    };
    let parts = match req {
        Value::Tuple(p) | Value::List(p) if p.len() == 4 => p,
        other => return traceback(&format!("malformed request {other}")),
    };
    let [ident, method, args, kwds]: [Value; 4] = parts.try_into().expect("4 parts");
    let Value::String(method) = method else {
        return traceback("malformed request: the method name is not a str");
    };
    let args = match args {
        Value::Tuple(a) | Value::List(a) => a,
        Value::None => Vec::new(),
        other => return traceback(&format!("malformed request: arguments {other}")),
    };
    let kwds = match kwds {
        Value::Dict(d) => {
            let mut out = Vec::with_capacity(d.len());
            for (k, v) in d {
                match k.into_value() {
                    Value::String(k) => out.push((k, v)),
                    other => return traceback(&format!("malformed request: keyword {other}")),
                }
            }
            out
        }
        Value::None => Vec::new(),
        other => return traceback(&format!("malformed request: keywords {other}")),
    };
    match ident {
        Value::None => public(state, &method, &args),
        Value::String(id) => {
            let Some(obj) = u64::from_str_radix(&id, 16)
                .ok()
                .and_then(|id| cached(cache, id, state))
            else {
                return traceback(&format!("KeyError: no object with ident '{id}'"));
            };
            let mut call = Call {
                method: &method,
                args: &[],
                alive,
                fds_in: Default::default(),
                fds_out: Default::default(),
                py: Some(PyArgs { args, kwds }),
                conn,
            };
            match obj.call_python(&mut call) {
                Ok(value) => returned(&value),
                Err(CallError(f)) => failure(&f, &method, &*obj),
            }
        }
        other => traceback(&format!("malformed request: ident {other}")),
    }
}

fn cached(
    cache: &mut HashMap<u64, Arc<dyn Object>>,
    id: u64,
    state: &ServerState,
) -> Option<Arc<dyn Object>> {
    if let Some(o) = cache.get(&id) {
        return Some(Arc::clone(o));
    }
    let o = state.object(id)?;
    cache.insert(id, Arc::clone(&o));
    Some(o)
}

/// The reply for a failed call: the matching Python exception, or a
/// `RemoteError` with the message.
fn failure(f: &CallFailure, method: &str, obj: &dyn Object) -> Vec<u8> {
    if let Some(exc) = &f.python {
        let args: Vec<&[u8]> = exc.args.iter().map(Vec::as_slice).collect();
        return pickle::tagged(
            "#ERROR",
            &pickle::exception_body(exc.module, exc.class, &args),
        );
    }
    if f.code == Failure::NotFound {
        let text = format!(
            "method '{method}' of {} object is not in exposed={:?}",
            obj.kind(),
            obj.exposed()
        );
        let t = pickle::encode(&text).expect("a str pickles");
        return pickle::tagged(
            "#ERROR",
            &pickle::exception_body("builtins", "AttributeError", &[pickle::body(&t)]),
        );
    }
    traceback(&f.message)
}

/// The manager's own functions (`ident` is `None`).
fn public(state: &ServerState, method: &str, args: &[Value]) -> Vec<u8> {
    match method {
        "dummy" | "accept_connection" | "incref" | "decref" => returned(NONE_PICKLE),
        "create" => {
            let Some(Value::String(typeid)) = args.first() else {
                return traceback("create: the typeid must be a str");
            };
            if state.is_factory(typeid) {
                return match state.make(typeid, None, MakeArgs::Python(args[1..].to_vec())) {
                    Ok((id, obj)) => created(id, &*obj),
                    Err(f) => traceback(&f.message),
                };
            }
            if args.len() > 1 {
                return traceback(&format!(
                    "create: `{typeid}` is one object registered by a Rust program, which \
                     takes no arguments"
                ));
            }
            match state.named(typeid) {
                None => traceback(&format!("KeyError: '{typeid}' is not registered")),
                Some((id, obj)) => created(id, &*obj),
            }
        }
        "number_of_objects" => {
            returned(&pickle::encode(&(state.len() as u64)).expect("an int pickles"))
        }
        "debug_info" => returned(
            &pickle::encode(&format!("mproc manager holding {} objects", state.len()))
                .expect("a str pickles"),
        ),
        "shutdown" => traceback(
            "mproc's BaseManager is shut down by the program that serves it, not by a client",
        ),
        other => traceback(&format!("'{other}' unrecognized")),
    }
}

const NONE_PICKLE: &[u8] = b"\x80\x03N.";

/// `create`'s reply: the object's ident and the methods its proxy may call.
fn created(id: u64, obj: &dyn Object) -> Vec<u8> {
    let exposed = obj
        .exposed()
        .iter()
        .map(|m| Value::String((*m).to_string()))
        .collect();
    let v = Value::Tuple(vec![
        Value::String(format!("{id:x}")),
        Value::Tuple(exposed),
    ]);
    returned(&pickle::encode_value(&v).expect("plain values pickle"))
}
