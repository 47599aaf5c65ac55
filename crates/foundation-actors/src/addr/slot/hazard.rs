//! A value published for readers that take no lock: hazard pointers with asymmetric fences.
//!
//! # Protocol
//!
//! [`Published`] holds a value inline and a flag saying whether it is published. A reader
//! checks the flag, stores the address of the [`Published`] in its thread's *hazard
//! record*, issues a light barrier, and checks the flag again: if it is still set the
//! reader may use the value until it clears its record; if not, it gives up (the caller
//! falls back to its lock). A writer clears the flag, issues a heavy barrier, and waits
//! until no hazard record holds this address; only then does it drop or overwrite the
//! value, and it sets the flag again after writing a new one.
//!
//! The two barriers order each side's store before its load, as two `SeqCst` fences
//! would: either the reader's second check sees the flag cleared, or the writer's scan
//! sees the reader's hazard. So when [`Published::retire`] returns, no reader is using the
//! old value and none will: the guarantee a write lock gives against read locks.
//! [`Published::retire_later`] only clears the flag: readers already holding the value
//! finish with it, and the wait is left to whichever writer comes next.
//!
//! # Barriers
//!
//! The heavy barrier is `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` (Linux), which
//! makes every running thread of the process pass a full barrier; the light one is then a
//! compiler fence, so a reader does no atomic read-modify-write and no fence at all.
//! Where `membarrier` is missing (another OS, an old kernel, a sandbox that refuses it)
//! nothing is published, and every reader takes its lock as if this module were not
//! there. The loom models stand in `SeqCst` fences for both barriers.
//!
//! # Records
//!
//! A thread takes a record on its first read and gives it back when it exits; records are
//! never freed, and a later thread reuses a free one, so there are as many as there were
//! threads reading at once. A read from a thread whose record is gone (a thread-local
//! destructor running late) or already in use (a nested read) is refused: the caller takes
//! its lock.

// Reading and writing the value without a lock is what this module is for; the protocol
// above is what makes it sound, and the loom models check it.
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::Ordering;

use crate::loom::{AtomicBool, AtomicUsize, Mutex, lock};

#[cfg(feature = "loom")]
use loom::cell::{ConstPtr, UnsafeCell};

#[cfg(not(feature = "loom"))]
use cell::{ConstPtr, UnsafeCell};

/// One thread's hazard: the address of the [`Published`] whose value it is reading, or 0.
struct Record {
    protected: AtomicUsize,
    in_use: AtomicBool,
}

#[cfg(not(feature = "loom"))]
static RECORDS: Mutex<Vec<&'static Record>> = Mutex::new(Vec::new());

#[cfg(feature = "loom")]
loom::lazy_static! {
    static ref RECORDS: crate::loom::Mutex<Vec<&'static Record>> =
        crate::loom::Mutex::new(Vec::new());
}

/// The calling thread's record, held for the thread's life.
struct Local(&'static Record);

impl Local {
    fn acquire() -> Self {
        let mut records = lock(&RECORDS);
        for &r in records.iter() {
            if r.in_use
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Self(r);
            }
        }
        let r: &'static Record = Box::leak(Box::new(Record {
            protected: AtomicUsize::new(0),
            in_use: AtomicBool::new(true),
        }));
        records.push(r);
        Self(r)
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // No read on this thread may use the record once another thread can take it.
        #[cfg(not(feature = "loom"))]
        let _ = FAST.try_with(|f| f.set(None));
        self.0.in_use.store(false, Ordering::Release);
    }
}

#[cfg(not(feature = "loom"))]
thread_local! {
    /// The record, once taken: a plain thread-local (no lazy initialisation, no
    /// destructor), so the send path reads it with one load.
    static FAST: std::cell::Cell<Option<&'static Record>> = const { std::cell::Cell::new(None) };
    /// Owns the record, and gives it back (clearing `FAST` first) when the thread exits.
    static LOCAL: Local = Local::acquire();
}

#[cfg(feature = "loom")]
loom::thread_local! {
    static LOCAL: Local = Local::acquire();
}

/// The calling thread's record, if it still has one. Kept out of line: the thread-local
/// lookup is then direct here, instead of an indirect call from every generic caller.
#[cfg(not(feature = "loom"))]
#[inline(never)]
fn local_record() -> Option<&'static Record> {
    match FAST.get() {
        Some(r) => Some(r),
        None => first_record(),
    }
}

/// Takes this thread's record on its first read; `None` once the thread's destructors
/// have given it back (a send from a later destructor then takes the lock).
#[cfg(not(feature = "loom"))]
#[cold]
fn first_record() -> Option<&'static Record> {
    let r = LOCAL.try_with(|l| l.0).ok()?;
    FAST.set(Some(r));
    Some(r)
}

#[cfg(feature = "loom")]
fn local_record() -> Option<&'static Record> {
    LOCAL.try_with(|l| l.0).ok()
}

/// Waits until no record holds `addr`.
fn wait_unprotected(addr: usize) {
    let records = lock(&RECORDS).clone();
    for r in records {
        while r.protected.load(Ordering::Acquire) == addr {
            crate::loom::yield_now();
        }
    }
}

/// A value readers may use without a lock while it is published; see the
/// [module docs](self).
///
/// The value lives inline, so publishing allocates nothing. It is written only while it is
/// not published and no reader holds it: writers take `writer`, unpublish, and wait out the
/// readers that may still hold it before they write.
pub(crate) struct Published<T> {
    /// Whether `value` may be read.
    live: AtomicBool,
    value: UnsafeCell<Option<T>>,
    /// Serialises writers. `true` while readers may still hold `value`: from a publish
    /// until a writer has unpublished and waited for them.
    writer: Mutex<bool>,
}

// SAFETY: readers on other threads get `&T` (so `T: Sync`), and a writer on any thread
// may drop the value (so `T: Send`).
unsafe impl<T: Send + Sync> Sync for Published<T> {}
// SAFETY: moving it moves the owned value.
unsafe impl<T: Send> Send for Published<T> {}

impl<T> Published<T> {
    /// Nothing published.
    pub(crate) fn new() -> Self {
        Self {
            live: AtomicBool::new(false),
            value: UnsafeCell::new(None),
            writer: Mutex::new(false),
        }
    }

    /// What a reader's hazard holds while it reads this value.
    fn addr(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// The published value, protected from being unpublished and overwritten until the
    /// guard drops; `None` if nothing is published, it was unpublished meanwhile, or this
    /// thread cannot take a hazard now (see the [module docs](self#records)).
    #[inline]
    pub(crate) fn protect(&self) -> Option<Protected<'_, T>> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let record = local_record()?;
        if record.protected.load(Ordering::Relaxed) != 0 {
            return None;
        }
        record.protected.store(self.addr(), Ordering::Relaxed);
        barrier::light();
        if !self.live.load(Ordering::Acquire) {
            record.protected.store(0, Ordering::Release);
            return None;
        }
        // Taken only now: under loom, the access starts here.
        let value = self.value.get();
        // SAFETY: our hazard is visible to any writer that unpublishes from here on (the
        // barriers order that), and a writer writes only after waiting for the hazard to
        // clear; the value was live after the hazard was set, so its last write happened
        // before this read (the `Release` that made it live, and the `Acquire` above).
        if unsafe { value.deref() }.is_none() {
            // Under loom the pointer's drop ends its tracked read; std's has none.
            #[allow(clippy::drop_non_drop)]
            drop(value);
            record.protected.store(0, Ordering::Release);
            return None;
        }
        Some(Protected {
            record,
            value: Some(value),
            _published: PhantomData,
        })
    }

    /// Whether nothing is published though the barriers are available now: a value that
    /// was written before they were (see `barrier::available`) can be published late.
    #[inline]
    pub(crate) fn could_publish(&self) -> bool {
        !self.live.load(Ordering::Relaxed) && barrier::available()
    }

    /// Publishes `value` in place of what was published before. Where the barriers are
    /// missing nothing is published (readers take their lock) and `value` is dropped.
    pub(crate) fn publish(&self, value: T) {
        let mut held = lock(&self.writer);
        self.unpublish_and_wait(&mut held);
        if !barrier::available() {
            return;
        }
        // SAFETY: unpublished, and no reader holds it (`unpublish_and_wait`); writers are
        // serialised by `writer`.
        let cell = self.value.get_mut();
        unsafe { *cell.deref() = Some(value) };
        *held = true;
        self.live.store(true, Ordering::Release);
    }

    /// Unpublishes the value and drops it: when this returns no reader is using it, and
    /// none will. Waits for readers (a heavy barrier), so a restart pays it, not a send.
    pub(crate) fn retire(&self) {
        let mut held = lock(&self.writer);
        self.unpublish_and_wait(&mut held);
        // SAFETY: as in `publish`.
        let cell = self.value.get_mut();
        let old = unsafe { cell.deref() }.take();
        drop(held);
        drop(old);
    }

    /// Unpublishes the value without waiting: readers that hold it may finish with it, and
    /// it is dropped by the next `publish` or `retire`, or with `self`. For a process that
    /// stopped for good, whose incarnation refuses deliveries anyway: a stop pays no barrier.
    pub(crate) fn retire_later(&self) {
        let _held = lock(&self.writer);
        self.live.store(false, Ordering::Release);
    }

    /// Unpublishes, and if readers may still hold the value, waits for them.
    fn unpublish_and_wait(&self, held: &mut bool) {
        self.live.store(false, Ordering::SeqCst);
        if *held {
            barrier::heavy();
            wait_unprotected(self.addr());
            *held = false;
        }
    }
}

/// A published value in use: writers wait until it drops.
pub(crate) struct Protected<'a, T> {
    record: &'static Record,
    /// Always `Some` until `drop`, which lets go of it before clearing the hazard (under
    /// loom it is a tracked read access).
    value: Option<ConstPtr<Option<T>>>,
    _published: PhantomData<&'a Published<T>>,
}

impl<T> Deref for Protected<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the hazard keeps writers away while the guard lives (see `protect`).
        match self.value.as_ref().map(|v| unsafe { v.deref() }) {
            Some(Some(v)) => v,
            _ => unreachable_guard(),
        }
    }
}

#[cold]
fn unreachable_guard() -> ! {
    // `protect` hands out a guard only over a value, and `value` is only taken in `drop`.
    unreachable!("a hazard guard without a value")
}

impl<T> Drop for Protected<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.value = None;
        self.record.protected.store(0, Ordering::Release);
    }
}

/// std's `UnsafeCell` with the access API of loom's, which tracks accesses.
#[cfg(not(feature = "loom"))]
mod cell {
    pub(super) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(super) fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }

        pub(super) fn get(&self) -> ConstPtr<T> {
            ConstPtr(self.0.get())
        }

        pub(super) fn get_mut(&self) -> MutPtr<T> {
            MutPtr(self.0.get())
        }
    }

    pub(super) struct MutPtr<T>(*mut T);

    impl<T> MutPtr<T> {
        /// # Safety
        ///
        /// Nothing else may read or write the cell while the reference lives.
        #[allow(clippy::mut_from_ref)]
        pub(super) unsafe fn deref(&self) -> &mut T {
            // SAFETY: as the caller promises.
            unsafe { &mut *self.0 }
        }
    }

    pub(super) struct ConstPtr<T>(*const T);

    impl<T> ConstPtr<T> {
        /// # Safety
        ///
        /// The cell must outlive the reference, and nothing may write to it meanwhile.
        pub(super) unsafe fn deref(&self) -> &T {
            // SAFETY: as the caller promises.
            unsafe { &*self.0 }
        }
    }
}

/// The light (reader) and heavy (writer) barriers: `membarrier` on Linux.
#[cfg(all(not(feature = "loom"), any(target_os = "linux", target_os = "android")))]
mod barrier {
    use std::sync::atomic::{AtomicU8, Ordering, compiler_fence, fence};

    use rustix::thread::{MembarrierCommand, membarrier, membarrier_query};

    const UNASKED: u8 = 0;
    const REGISTERING: u8 = 1;
    const READY: u8 = 2;
    const UNAVAILABLE: u8 = 3;

    /// Where the process is with `membarrier`: registration is asked for once, on a thread
    /// of its own, since the kernel may take milliseconds to grant it (tens under load) and
    /// a process's first actor start should not wait for that.
    static STATE: AtomicU8 = AtomicU8::new(UNASKED);

    fn register() -> bool {
        let q = membarrier_query();
        q.contains_command(MembarrierCommand::PrivateExpedited)
            && q.contains_command(MembarrierCommand::RegisterPrivateExpedited)
            && membarrier(MembarrierCommand::RegisterPrivateExpedited).is_ok()
    }

    /// Whether the barriers are available. The first call starts the registration and
    /// answers no; later calls answer yes once it is done. Nothing is published without
    /// them, so a reader that finds a value knows they are.
    pub(super) fn available() -> bool {
        match STATE.load(Ordering::Acquire) {
            READY => true,
            UNASKED => {
                start();
                false
            }
            _ => false,
        }
    }

    #[cold]
    fn start() {
        if STATE
            .compare_exchange(UNASKED, REGISTERING, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("foundation-membarrier".to_owned())
            .spawn(|| {
                let state = if register() { READY } else { UNAVAILABLE };
                STATE.store(state, Ordering::Release);
            });
        if spawned.is_err() {
            STATE.store(UNAVAILABLE, Ordering::Release);
        }
    }

    /// The reader's barrier: a compiler fence, made a full one by the writer's `heavy`.
    #[inline]
    pub(super) fn light() {
        compiler_fence(Ordering::SeqCst);
    }

    /// The writer's barrier: every running thread of the process passes a full barrier.
    pub(super) fn heavy() {
        fence(Ordering::SeqCst);
        if membarrier(MembarrierCommand::PrivateExpedited).is_err()
            && membarrier(MembarrierCommand::Global).is_err()
        {
            // Registered, so the kernel supports it: this does not happen. Should it, a
            // reader's hazard store still reaches memory within far less than this (a
            // store buffer drains in nanoseconds, a context switch drains it at once).
            tracing::error!("membarrier failed after registration; waiting instead");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// Without `membarrier` nothing is published: every send takes the slot's read lock.
#[cfg(all(
    not(feature = "loom"),
    not(any(target_os = "linux", target_os = "android"))
))]
mod barrier {
    pub(super) fn available() -> bool {
        false
    }

    pub(super) fn light() {}

    pub(super) fn heavy() {}
}

/// Under loom the barriers are modelled as `SeqCst` fences, which is what `membarrier`
/// makes of the reader's compiler fence.
#[cfg(feature = "loom")]
mod barrier {
    use std::sync::atomic::Ordering;

    use crate::loom::fence;

    pub(super) fn available() -> bool {
        true
    }

    pub(super) fn light() {
        fence(Ordering::SeqCst);
    }

    pub(super) fn heavy() {
        fence(Ordering::SeqCst);
    }
}
