//! The server: an accept loop, one thread per connection, the handshake,
//! and dispatch of requests to objects.

use crate::sys::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::Shutdown;
use std::net::TcpListener;
#[cfg(unix)]
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::conn::{HANDSHAKE_TIMEOUT, Stream};
use super::fastpath::{Dir, FastPath, Message};
use super::objects;
use super::shared::{self, Call, Factory, MakeArgs, Object, ObjectBox};
use super::wire::{self, CallFailure, Failure, FrameDecoder, MESSAGE_LIMIT, Request};
use crate::ipc::auth::{self, AuthError};
use crate::sys;

/// The most connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 4096;
/// The most connections in their handshake at once; more are closed at
/// accept (each gets at most `HANDSHAKE_TIMEOUT` to finish).
const MAX_HANDSHAKES: usize = 1024;

/// Everything a server holds.
pub(crate) struct ServerState {
    authkey: Vec<u8>,
    policy: auth::Policy,
    objects: RwLock<HashMap<u64, Arc<dyn Object>>>,
    names: RwLock<HashMap<String, u64>>,
    /// Factories by name: each request makes a new object.
    factories: HashMap<String, Factory>,
    next_id: AtomicU64,
    stopping: AtomicBool,
    /// A clone of each live connection's socket, to shut it down on stop.
    live: Mutex<HashMap<u64, Stream>>,
    /// Signalled when a connection ends.
    ended: Condvar,
    next_conn: AtomicU64,
    /// Connections still in their handshake.
    handshaking: AtomicUsize,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("stopping", &self.is_stopping())
            .finish_non_exhaustive()
    }
}

impl ServerState {
    /// A server with `named` objects registered under their names.
    pub(crate) fn new(
        authkey: Vec<u8>,
        policy: auth::Policy,
        named: Vec<(String, ObjectBox)>,
        factories: Vec<(String, Factory)>,
    ) -> Arc<ServerState> {
        let state = ServerState {
            authkey,
            policy,
            objects: RwLock::new(HashMap::new()),
            names: RwLock::new(HashMap::new()),
            factories: factories.into_iter().collect(),
            // Ids start at a random point, so that a stale proxy of an
            // earlier server at the same address finds nothing here
            // rather than another object.
            next_id: AtomicU64::new(first_id()),
            stopping: AtomicBool::new(false),
            live: Mutex::new(HashMap::new()),
            ended: Condvar::new(),
            next_conn: AtomicU64::new(1),
            handshaking: AtomicUsize::new(0),
        };
        for (name, obj) in named {
            let id = state.insert(obj.0);
            state
                .names
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name, id);
        }
        Arc::new(state)
    }

    fn insert(&self, obj: Arc<dyn Object>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.objects
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, obj);
        id
    }

    /// The object registered as `name`, with its id.
    pub(super) fn named(&self, name: &str) -> Option<(u64, Arc<dyn Object>)> {
        let id = *self
            .names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)?;
        Some((id, self.object(id)?))
    }

    /// A new object from the factory registered as `name`, and its id.
    pub(super) fn make(
        &self,
        name: &str,
        kind: Option<&str>,
        args: MakeArgs<'_>,
    ) -> Result<(u64, Arc<dyn Object>), CallFailure> {
        let Some(f) = self.factories.get(name) else {
            return Err(CallFailure::new(
                Failure::NotFound,
                format!("no factory is registered as `{name}`"),
            ));
        };
        if let Some(kind) = kind.filter(|&k| k != f.kind) {
            return Err(CallFailure::new(
                Failure::NotFound,
                format!("`{name}` makes a {}, not a {kind}", f.kind),
            ));
        }
        let obj = (f.make)(args)
            .map_err(|m| CallFailure::new(Failure::Decode, format!("`{name}`: {m}")))?;
        let id = self.insert(Arc::clone(&obj.0));
        Ok((id, obj.0))
    }

    /// Whether `name` is a factory.
    pub(super) fn is_factory(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// How many objects the server holds.
    pub(super) fn len(&self) -> usize {
        self.objects.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub(super) fn object(&self, id: u64) -> Option<Arc<dyn Object>> {
        self.objects
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// Stops serving: no new connections; every live one stops reading, so
    /// it ends after answering the request it is running (a blocking call
    /// ends at its next slice). Waits up to `grace` for them, so that a
    /// reply already earned (a `put` that went through) reaches its client.
    pub(crate) fn stop(&self, grace: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + grace;
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        for s in live.values() {
            s.shutdown(Shutdown::Read);
        }
        while !live.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            live = self
                .ended
                .wait_timeout(live, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        for s in live.values() {
            s.shutdown(Shutdown::Both);
        }
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Runs one request and encodes its reply. `cache` is the connection's
    /// own map of objects it has used (objects live as long as the server,
    /// so it never goes stale), sparing the shared table's lock.
    fn execute(
        &self,
        conn: u64,
        req: Request<'_>,
        fds: Vec<OwnedFd>,
        alive: &dyn Fn() -> bool,
        cache: &mut HashMap<u64, Arc<dyn Object>>,
    ) -> Message {
        let mut reply_fds = Vec::new();
        let result: Result<Vec<u8>, CallFailure> = match req {
            Request::Create { kind, init } => objects::create(kind, init, fds)
                .map(|o| self.insert(o).to_be_bytes().to_vec()),
            Request::Share {
                name,
                fingerprint,
                object,
            } => shared::lookup(name)
                .map_err(|m| CallFailure::new(Failure::NotFound, m))
                .and_then(|entry| {
                    if (entry.fingerprint)() != fingerprint {
                        return Err(CallFailure::new(
                            Failure::Decode,
                            format!("`{name}` has other types in the manager's server (a different build?)"),
                        ));
                    }
                    shared::with_revive_fds(fds, || (entry.revive)(object))
                        .map_err(|m| CallFailure::new(Failure::Decode, format!("`{name}`: {m}")))
                })
                .map(|o| self.insert(o.0).to_be_bytes().to_vec()),
            Request::Lookup { name, kind } => {
                let id = self
                    .names
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(name)
                    .copied();
                match id.and_then(|id| Some((id, self.object(id)?))) {
                    None if self.is_factory(name) => Err(CallFailure::new(
                        Failure::NotFound,
                        format!("`{name}` is a factory: call `create` to make an object"),
                    )),
                    None => Err(CallFailure::new(
                        Failure::NotFound,
                        format!("no object is registered as `{name}`"),
                    )),
                    Some((_, o)) if o.kind() != kind => Err(CallFailure::new(
                        Failure::NotFound,
                        format!("`{name}` is a {}, not a {kind}", o.kind()),
                    )),
                    Some((id, _)) => Ok(id.to_be_bytes().to_vec()),
                }
            }
            Request::Call { id, method, args } => match cached(cache, id, || self.object(id)) {
                None => Err(CallFailure::new(
                    Failure::NotFound,
                    format!("no object with id {id}"),
                )),
                Some(o) => {
                    let mut call = Call {
                        method,
                        args,
                        alive,
                        fds_in: RefCell::new(fds),
                        fds_out: RefCell::new(Vec::new()),
                        py: None,
                        conn,
                    };
                    let r = o.call(&mut call).map_err(|e| e.0);
                    if r.is_ok() {
                        reply_fds = call.fds_out.into_inner();
                    }
                    r
                }
            },
            Request::Make { name, kind, args } => self
                .make(name, Some(kind), MakeArgs::Rust(args))
                .map(|(id, _)| id.to_be_bytes().to_vec()),
            Request::FastPath => Err(CallFailure::new(
                Failure::Protocol,
                "the fast path is only offered once, on a Unix socket",
            )),
        };
        match result {
            Ok(body) => (wire::ok_reply(&body), reply_fds),
            Err(f) => (wire::err_reply(&f), Vec::new()),
        }
    }
}

/// A random first object id (high 32 bits random, low bits counting).
fn first_id() -> u64 {
    let mut r = [0u8; 4];
    sys::fill_random(&mut r);
    (u64::from(u32::from_ne_bytes(r)) << 32) | 1
}

/// The object `id` from `cache`, fetched with `fetch` on first use.
fn cached(
    cache: &mut HashMap<u64, Arc<dyn Object>>,
    id: u64,
    fetch: impl FnOnce() -> Option<Arc<dyn Object>>,
) -> Option<&Arc<dyn Object>> {
    match cache.entry(id) {
        std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut()),
        std::collections::hash_map::Entry::Vacant(e) => Some(e.insert(fetch()?)),
    }
}

/// A listening socket of either family.
pub(crate) enum Listener {
    #[cfg(unix)]
    Unix(UnixListener),
    /// A local manager's loopback listener on Windows (`Stream::Local`).
    #[cfg(windows)]
    Local(TcpListener),
    Tcp(TcpListener),
}

impl Listener {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            #[cfg(unix)]
            Listener::Unix(l) => l.as_fd(),
            #[cfg(windows)]
            Listener::Local(l) => l.as_fd(),
            Listener::Tcp(l) => l.as_fd(),
        }
    }
    fn accept(&self) -> io::Result<Stream> {
        Ok(match self {
            #[cfg(unix)]
            Listener::Unix(l) => Stream::Unix(l.accept()?.0),
            #[cfg(windows)]
            Listener::Local(l) => Stream::Local(accept_tcp(l)?),
            Listener::Tcp(l) => Stream::Tcp(accept_tcp(l)?),
        })
    }
}

/// Accepts a TCP connection, without Nagle's delay.
fn accept_tcp(l: &TcpListener) -> io::Result<std::net::TcpStream> {
    let s = l.accept()?.0;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// Accepts connections until `waker` becomes readable (or forever without
/// one), serving each on its own thread.
pub(crate) fn serve(state: Arc<ServerState>, listener: Listener, waker: Option<OwnedFd>) {
    loop {
        let mut fds = vec![sys::PollFd::readable(listener.fd().as_raw_fd())];
        if let Some(w) = &waker {
            fds.push(sys::PollFd::readable(w.as_raw_fd()));
        }
        if sys::poll(&mut fds, None).is_err() {
            continue;
        }
        if fds.len() > 1 && fds[1].fired() || state.is_stopping() {
            return;
        }
        if !fds[0].fired() {
            continue;
        }
        let stream = match listener.accept() {
            Ok(s) => s,
            Err(e) => {
                log::debug!(target: "mproc", "manager: accept failed: {e}");
                // Out of descriptors, say: do not spin on it.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let count = state.live.lock().unwrap_or_else(|e| e.into_inner()).len();
        if count >= MAX_CONNECTIONS || state.handshaking.load(Ordering::SeqCst) >= MAX_HANDSHAKES {
            log::warn!(target: "mproc", "manager: too many connections; refusing one");
            continue;
        }
        state.handshaking.fetch_add(1, Ordering::SeqCst);
        let st = Arc::clone(&state);
        let spawned = std::thread::Builder::new()
            .name("mproc-manager-conn".into())
            .spawn(move || connection(st, stream));
        if let Err(e) = spawned {
            state.handshaking.fetch_sub(1, Ordering::SeqCst);
            log::warn!(target: "mproc", "manager: cannot start a connection thread: {e}");
        }
    }
}

/// Serves one connection from handshake to hang-up.
fn connection(state: Arc<ServerState>, mut stream: Stream) {
    let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let mut decoder = FrameDecoder::new(wire::HANDSHAKE_LIMIT);
    let shaken = auth::server_handshake(&mut stream, &mut decoder, &state.authkey, state.policy);
    state.handshaking.fetch_sub(1, Ordering::SeqCst);
    match shaken {
        Ok(()) => {}
        Err(AuthError::Denied) => {
            log::warn!(target: "mproc", "manager: a connection failed authentication (wrong authkey)");
            return;
        }
        Err(AuthError::Io(e)) => {
            log::debug!(target: "mproc", "manager: handshake failed: {e}");
            return;
        }
    }
    if stream.set_read_timeout(None).is_err() {
        return;
    }
    decoder.set_limit(MESSAGE_LIMIT);
    let id = state.next_conn.fetch_add(1, Ordering::Relaxed);
    if let Ok(clone) = stream.try_clone() {
        state
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, clone);
    }
    // Leaves the table however this thread ends (a panic included), so a
    // stopping server never waits for a connection that is gone.
    let _leave = Leave(&state, id);
    if state.is_stopping() {
        stream.shutdown(Shutdown::Both);
    }
    if let Err(e) = serve_requests(&state, id, &mut stream, &mut decoder) {
        log::debug!(target: "mproc", "manager: dropping a connection: {e}");
    }
}

/// Removes connection `.1` from the live table when dropped.
struct Leave<'a>(&'a ServerState, u64);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
        self.0.ended.notify_all();
    }
}

fn serve_requests(
    state: &ServerState,
    conn: u64,
    stream: &mut Stream,
    decoder: &mut FrameDecoder,
) -> io::Result<()> {
    // A second descriptor of the socket, to look for a hang-up while a
    // blocking call waits.
    let probe = stream.try_clone()?;
    let alive = move || !state.is_stopping() && !sys::peer_gone(probe.fd());
    let mut cache = HashMap::new();
    let served = serve_loop(state, conn, stream, decoder, &alive, &mut cache);
    // What this client held (a reentrant lock) is let go: its thread, or
    // its process, is gone.
    for o in cache.values() {
        o.disconnected(conn);
    }
    served
}

fn serve_loop(
    state: &ServerState,
    conn: u64,
    stream: &mut Stream,
    decoder: &mut FrameDecoder,
    alive: &dyn Fn() -> bool,
    cache: &mut HashMap<u64, Arc<dyn Object>>,
) -> io::Result<()> {
    loop {
        let Some(frame) = decoder.read_frame(stream)? else {
            return Ok(());
        };
        // A pickle (protocol 2 or newer starts with PROTO, 0x80; mproc's
        // own request headers start with a small variant number): a
        // Python client, for the rest of the connection.
        if frame.first() == Some(&0x80) {
            return super::python::serve(state, conn, stream, decoder, frame, alive, cache);
        }
        let req = Request::parse(&frame)?;
        if req == Request::FastPath && stream.carries_handles() {
            let (fast, fd) = FastPath::create()?;
            stream.start_fast_path()?;
            // A one-byte reply frame carrying the memory's descriptor.
            super::fastpath::send_frame(stream.fd(), &[0], &[fd.as_raw_fd()])?;
            drop(fd);
            return serve_fast(state, conn, stream, decoder, fast, alive, cache);
        }
        // Descriptors travel only on the fast path (a local manager).
        let (reply, _) = state.execute(conn, req, Vec::new(), alive, cache);
        wire::write_frame(stream, &reply)?;
    }
}

fn serve_fast(
    state: &ServerState,
    conn: u64,
    stream: &mut Stream,
    decoder: &mut FrameDecoder,
    mut fast: FastPath,
    alive: &dyn Fn() -> bool,
    cache: &mut HashMap<u64, Arc<dyn Object>>,
) -> io::Result<()> {
    loop {
        let sock = stream.fd();
        let Some((frame, fds)) = fast.recv(Dir::Request, sock, decoder)? else {
            return Ok(());
        };
        let req = Request::parse(&frame)?;
        let (reply, reply_fds) = state.execute(conn, req, fds, alive, cache);
        let raw: Vec<RawFd> = reply_fds.iter().map(AsRawFd::as_raw_fd).collect();
        fast.send(Dir::Reply, stream.fd(), &reply, &raw)?;
    }
}
