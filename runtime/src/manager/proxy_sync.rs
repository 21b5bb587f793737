//! The proxies of `sync_objects.rs`: a semaphore, a joinable queue, a
//! barrier, an array, a reentrant lock and a condition held by a manager.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::ManagerError;
use super::conn::Handle;
use super::proxy::{dec, enc, nanos, proxy_type};
use super::shared::Proxy;

proxy_type! {
    /// A semaphore held by a manager (Python's `manager.Semaphore(n)` and
    /// `manager.BoundedSemaphore(n)`), made by
    /// [`Manager::semaphore`](crate::Manager::semaphore) or
    /// [`Manager::bounded_semaphore`](crate::Manager::bounded_semaphore).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let m = mproc::Manager::start().unwrap();
    /// let s = m.bounded_semaphore(2).unwrap();
    /// s.acquire().unwrap();
    /// assert!(s.try_acquire().unwrap());
    /// assert!(!s.acquire_timeout(Duration::from_millis(10)).unwrap());
    /// s.release().unwrap();
    /// s.release().unwrap();
    /// assert!(s.release().is_err()); // past its initial value
    /// ```
    SemaphoreProxy [] "semaphore"
}

impl SemaphoreProxy {
    /// Waits until the count is positive and decrements it.
    pub fn acquire(&self) -> Result<(), ManagerError> {
        self.handle
            .call::<_, bool>("acquire", &None::<u64>)
            .map(drop)
    }

    /// Decrements the count if it becomes positive within `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        self.handle.call("acquire", &Some(nanos(timeout)))
    }

    /// Decrements the count if it is positive now (Python's
    /// `acquire(blocking=False)`).
    pub fn try_acquire(&self) -> Result<bool, ManagerError> {
        self.handle.call("acquire", &Some(0u64))
    }

    /// Increments the count, waking a waiter.
    ///
    /// # Errors
    /// [`ManagerError::Remote`] for a bounded semaphore released past its
    /// initial value (Python's `ValueError`).
    pub fn release(&self) -> Result<(), ManagerError> {
        self.handle.call("release", &1u64)
    }

    /// The current count.
    pub fn value(&self) -> Result<u64, ManagerError> {
        self.handle.call("value", &())
    }
}

proxy_type! {
    /// A joinable queue held by a manager (Python's
    /// `manager.JoinableQueue()`), made by
    /// [`Manager::joinable_queue`](crate::Manager::joinable_queue): every
    /// item put counts as unfinished until a consumer calls
    /// [`task_done`](JoinableQueueProxy::task_done), and
    /// [`join`](JoinableQueueProxy::join) waits for none to be left.
    /// Items are plain values (no mproc handles inside).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let m = mproc::Manager::start().unwrap();
    /// let q = m.joinable_queue::<u32>().unwrap();
    /// q.put(1).unwrap();
    /// assert_eq!(q.get().unwrap(), 1);
    /// assert!(!q.join_timeout(Duration::from_millis(10)).unwrap());
    /// q.task_done().unwrap();
    /// q.join().unwrap();
    /// assert!(q.task_done().is_err()); // more than were put
    /// ```
    JoinableQueueProxy [T] "joinable_queue"
}

impl<T: Serialize + DeserializeOwned + Send + 'static> JoinableQueueProxy<T> {
    /// Puts an item at the back; it counts as unfinished.
    pub fn put(&self, item: T) -> Result<(), ManagerError> {
        self.handle.call("put", &enc(&item)?)
    }

    /// Takes the item at the front, waiting for one.
    pub fn get(&self) -> Result<T, ManagerError> {
        let b: Option<Vec<u8>> = self.handle.call("get", &None::<u64>)?;
        dec(&b.ok_or_else(|| ManagerError::Decode("no item after an unbounded wait".into()))?)
    }

    /// Takes the item at the front, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<Option<T>, ManagerError> {
        let b: Option<Vec<u8>> = self.handle.call("get", &Some(nanos(timeout)))?;
        b.map(|b| dec(&b)).transpose()
    }

    /// Takes the item at the front if there is one.
    pub fn try_get(&self) -> Result<Option<T>, ManagerError> {
        let b: Option<Vec<u8>> = self.handle.call("get", &Some(0u64))?;
        b.map(|b| dec(&b)).transpose()
    }

    /// Marks one item taken earlier as finished.
    ///
    /// # Errors
    /// [`ManagerError::Remote`] if more are marked than were put
    /// (Python's `ValueError`).
    pub fn task_done(&self) -> Result<(), ManagerError> {
        self.handle.call("task_done", &())
    }

    /// Waits until every item put has been marked finished.
    pub fn join(&self) -> Result<(), ManagerError> {
        self.handle.call::<_, bool>("join", &None::<u64>).map(drop)
    }

    /// [`join`](Self::join) for at most `timeout`: whether none is left.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        self.handle.call("join", &Some(nanos(timeout)))
    }

    /// The number of items waiting.
    pub fn len(&self) -> Result<usize, ManagerError> {
        self.handle.call::<_, u64>("len", &()).map(|n| n as usize)
    }

    /// Whether no item is waiting.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        self.len().map(|n| n == 0)
    }
}

proxy_type! {
    /// A barrier held by a manager (Python's `manager.Barrier(parties)`),
    /// made by [`Manager::barrier`](crate::Manager::barrier). A timed-out
    /// wait, [`abort`](BarrierProxy::abort) or a waiting process that dies
    /// breaks it: every waiter, and every later `wait`, gets an error (
    /// Python's `BrokenBarrierError`) until [`reset`](BarrierProxy::reset).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let m = mproc::Manager::start().unwrap();
    /// let b = m.barrier(1).unwrap();
    /// assert_eq!(b.wait().unwrap(), 0); // one party: passes at once
    /// let b2 = m.barrier(2).unwrap();
    /// assert!(b2.wait_timeout(Duration::from_millis(20)).is_err()); // alone: breaks
    /// assert!(b2.broken().unwrap());
    /// b2.reset().unwrap();
    /// assert!(!b2.broken().unwrap());
    /// ```
    BarrierProxy [] "barrier"
}

impl BarrierProxy {
    /// Waits until `parties` callers wait; returns this caller's index,
    /// distinct among them, in `0..parties`.
    ///
    /// # Errors
    /// [`ManagerError::Remote`] if the barrier is or becomes broken.
    pub fn wait(&self) -> Result<usize, ManagerError> {
        self.handle
            .call::<_, u64>("wait", &None::<u64>)
            .map(|i| i as usize)
    }

    /// [`wait`](Self::wait) for at most `timeout`; a timeout breaks the
    /// barrier (as in Python).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, ManagerError> {
        self.handle
            .call::<_, u64>("wait", &Some(nanos(timeout)))
            .map(|i| i as usize)
    }

    /// Breaks the barrier: current and later waiters get an error.
    pub fn abort(&self) -> Result<(), ManagerError> {
        self.handle.call("abort", &())
    }

    /// Returns the barrier to its first state; processes waiting now get
    /// an error.
    pub fn reset(&self) -> Result<(), ManagerError> {
        self.handle.call("reset", &())
    }

    /// How many callers it waits for.
    pub fn parties(&self) -> Result<usize, ManagerError> {
        self.handle
            .call::<_, u64>("parties", &())
            .map(|n| n as usize)
    }

    /// How many are waiting now.
    pub fn n_waiting(&self) -> Result<usize, ManagerError> {
        self.handle
            .call::<_, u64>("n_waiting", &())
            .map(|n| n as usize)
    }

    /// Whether it is broken.
    pub fn broken(&self) -> Result<bool, ManagerError> {
        self.handle.call("broken", &())
    }
}

proxy_type! {
    /// A fixed-length array held by a manager (Python's
    /// `manager.Array(typecode, sequence)`), made by
    /// [`Manager::array`](crate::Manager::array). Items are plain values.
    ///
    /// # Examples
    /// ```
    /// let m = mproc::Manager::start().unwrap();
    /// let a = m.array(vec![0.5_f64; 3]).unwrap();
    /// a.set(1, 2.0).unwrap();
    /// assert!(a.set(3, 1.0).is_err()); // fixed length
    /// assert_eq!(a.get(1).unwrap(), Some(2.0));
    /// assert_eq!(a.to_vec().unwrap(), [0.5, 2.0, 0.5]);
    /// assert_eq!(a.len().unwrap(), 3);
    /// ```
    ArrayProxy [T] "array"
}

impl<T: Serialize + DeserializeOwned + Send + 'static> ArrayProxy<T> {
    /// The item at `index`, if there is one.
    pub fn get(&self, index: usize) -> Result<Option<T>, ManagerError> {
        let b: Option<Vec<u8>> = self.handle.call("get", &(index as u64))?;
        b.map(|b| dec(&b)).transpose()
    }

    /// Replaces the item at `index`.
    ///
    /// # Errors
    /// [`ManagerError::Remote`] if `index` is past the end.
    pub fn set(&self, index: usize, item: T) -> Result<(), ManagerError> {
        self.handle.call("set", &(index as u64, enc(&item)?))
    }

    /// The number of items (fixed).
    pub fn len(&self) -> Result<usize, ManagerError> {
        self.handle.call::<_, u64>("len", &()).map(|n| n as usize)
    }

    /// Whether it has no items.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        self.len().map(|n| n == 0)
    }

    /// A copy of every item, in order.
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        let items: Vec<Vec<u8>> = self.handle.call("to_vec", &())?;
        items.iter().map(|b| dec(b)).collect()
    }
}

proxy_type! {
    /// A reentrant lock held by a manager (Python's `manager.RLock()`),
    /// made by [`Manager::rlock`](crate::Manager::rlock). Its owner is the
    /// thread that took it: each thread of each process reaches the
    /// manager on its own connection, and only the owner may release it;
    /// the owner may take it again, and must release it as many times.
    ///
    /// # Examples
    /// ```
    /// let m = mproc::Manager::start().unwrap();
    /// let r = m.rlock().unwrap();
    /// r.acquire().unwrap();
    /// r.acquire().unwrap(); // again, by its owner
    /// let other = r.clone();
    /// let taken = std::thread::spawn(move || other.try_acquire().unwrap()).join().unwrap();
    /// assert!(!taken); // another thread is not the owner
    /// r.release().unwrap();
    /// r.release().unwrap();
    /// assert!(r.release().is_err()); // not held any more
    /// ```
    RLockProxy [] "rlock"
}

impl RLockProxy {
    /// Waits until the lock is free (or held by this thread) and takes it.
    pub fn acquire(&self) -> Result<(), ManagerError> {
        self.handle
            .call::<_, bool>("acquire", &None::<u64>)
            .map(drop)
    }

    /// [`acquire`](Self::acquire) for at most `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        self.handle.call("acquire", &Some(nanos(timeout)))
    }

    /// Takes the lock if that needs no wait.
    pub fn try_acquire(&self) -> Result<bool, ManagerError> {
        self.handle.call("acquire", &Some(0u64))
    }

    /// Releases one level of this thread's hold.
    ///
    /// # Errors
    /// [`ManagerError::Remote`] if this thread does not hold it (Python's
    /// `RuntimeError`).
    pub fn release(&self) -> Result<(), ManagerError> {
        self.handle.call("release", &())
    }
}

proxy_type! {
    /// A condition variable held by a manager (Python's
    /// `manager.Condition()`, over a reentrant lock), made by
    /// [`Manager::condition`](crate::Manager::condition). Take the lock,
    /// check the state, [`wait`](ConditionProxy::wait) (which lets the
    /// lock go while waiting and takes it back), or change the state and
    /// [`notify`](ConditionProxy::notify) while holding it.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let m = mproc::Manager::start().unwrap();
    /// let c = m.condition().unwrap();
    /// c.acquire().unwrap();
    /// assert!(!c.wait_timeout(Duration::from_millis(10)).unwrap()); // nobody notified
    /// c.notify_all().unwrap();
    /// c.release().unwrap();
    /// assert!(c.notify(1).is_err()); // not held
    /// ```
    ConditionProxy [] "condition"
}

impl ConditionProxy {
    /// Takes the underlying lock (reentrant, owned by this thread).
    pub fn acquire(&self) -> Result<(), ManagerError> {
        self.handle
            .call::<_, bool>("acquire", &None::<u64>)
            .map(drop)
    }

    /// [`acquire`](Self::acquire) for at most `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        self.handle.call("acquire", &Some(nanos(timeout)))
    }

    /// Releases one level of this thread's hold.
    pub fn release(&self) -> Result<(), ManagerError> {
        self.handle.call("release", &())
    }

    /// Lets the lock go, waits for a notify, and takes the lock back (as
    /// deeply as it was held).
    ///
    /// # Errors
    /// [`ManagerError::Remote`] if this thread does not hold the lock.
    pub fn wait(&self) -> Result<(), ManagerError> {
        self.handle.call::<_, bool>("wait", &None::<u64>).map(drop)
    }

    /// [`wait`](Self::wait) for at most `timeout`: whether it was
    /// notified (the lock is taken back either way).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        self.handle.call("wait", &Some(nanos(timeout)))
    }

    /// Wakes up to `n` waiters, the longest-waiting first. Hold the lock.
    pub fn notify(&self, n: usize) -> Result<(), ManagerError> {
        self.handle.call("notify", &(n as u64))
    }

    /// Wakes every waiter. Hold the lock.
    pub fn notify_all(&self) -> Result<(), ManagerError> {
        self.handle.call("notify", &u64::MAX)
    }
}
