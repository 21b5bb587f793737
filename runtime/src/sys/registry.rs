//! Link-time registries on Windows: lists that items join before `main`.
//!
//! On Unix a registry is a `linkme` distributed slice. On Windows, with
//! MinGW's linker, such slices came out empty (the sections were dropped),
//! so there each item is a static [`Node`] that a `.CRT$XCU` initializer
//! pushes onto its [`Registry`] before `main`; the C runtime runs every
//! `.CRT$XC*` entry and the linker keeps them all. `mproc::__private::
//! register!` writes either form, so the macros and the runtime name one
//! thing.

use std::sync::atomic::{AtomicPtr, Ordering};

/// A list of `'static` items that grows before `main` and is only read
/// after.
pub struct Registry<T: 'static> {
    head: AtomicPtr<Node<T>>,
}

/// One item of a [`Registry`].
pub struct Node<T: 'static> {
    value: T,
    next: AtomicPtr<Node<T>>,
}

impl<T> Node<T> {
    /// An item not yet in any registry.
    pub const fn new(value: T) -> Node<T> {
        Node {
            value,
            next: AtomicPtr::new(std::ptr::null_mut()),
        }
    }
}

impl<T> Registry<T> {
    /// An empty registry.
    pub const fn new() -> Registry<T> {
        Registry {
            head: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Adds `node` (once: each node is pushed by its own initializer).
    pub fn push(&'static self, node: &'static Node<T>) {
        let me = (node as *const Node<T>).cast_mut();
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            node.next.store(head, Ordering::Relaxed);
            match self
                .head
                .compare_exchange_weak(head, me, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// The items, newest first.
    pub fn iter(&'static self) -> impl Iterator<Item = &'static T> {
        let mut at = self.head.load(Ordering::Acquire).cast_const();
        std::iter::from_fn(move || {
            if at.is_null() {
                return None;
            }
            // SAFETY: a non-null pointer in the list only ever comes from
            // `push`, which takes a `&'static Node`.
            let node: &'static Node<T> = unsafe { &*at };
            at = node.next.load(Ordering::Acquire).cast_const();
            Some(&node.value)
        })
    }
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry::new()
    }
}
