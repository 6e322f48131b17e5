//! A future polled again only once it has woken its task.
//!
//! A connection checks whether it must close on every read and write. The
//! futures that tell it (the shutdown's cancellation token, the refusal of
//! a connection over the cap) take a lock each time they are polled, once
//! per delivered message under load. Behind [`PollOnWake`], such a check
//! costs two atomic operations while nothing has changed.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;

pub struct PollOnWake<F: ?Sized> {
    future: Pin<Box<F>>,
    flag: Arc<WakeFlag>,
    /// Wakes `flag`: what the inner future is polled with, always the same
    /// waker, so it never has to replace the one it stored.
    waker: Waker,
}

struct WakeFlag {
    /// The inner future asked to be polled (true before its first poll).
    woken: AtomicBool,
    /// The task that polls the `PollOnWake`.
    task: AtomicWaker,
}

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future + ?Sized> PollOnWake<F> {
    pub fn new(future: Pin<Box<F>>) -> Self {
        let flag = Arc::new(WakeFlag {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Self {
            future,
            waker: Waker::from(Arc::clone(&flag)),
            flag,
        }
    }

    /// Polls the inner future if it has woken since its last poll; pending
    /// otherwise. Must not be called again once it is ready.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Registered before the flag is read: a wake in between finds it.
        self.flag.task.register(cx.waker());
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        self.future
            .as_mut()
            .poll(&mut Context::from_waker(&self.waker))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use chat_fanout::test_support::WakeCounter;

    /// Counts its polls; ready once `ready` is set.
    #[derive(Default)]
    struct Probe {
        polls: usize,
        ready: bool,
        waker: Option<Waker>,
    }

    struct Probed(Arc<Mutex<Probe>>);

    impl Future for Probed {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let mut probe = self.0.lock().unwrap();
            probe.polls += 1;
            probe.waker = Some(cx.waker().clone());
            if probe.ready {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    #[test]
    fn the_inner_future_is_polled_again_only_after_it_woke_the_task() {
        let probe = Arc::new(Mutex::new(Probe::default()));
        let mut polled = PollOnWake::new(Box::pin(Probed(Arc::clone(&probe))));
        let (task, waker) = WakeCounter::new();
        let mut cx = Context::from_waker(&waker);

        for _ in 0..5 {
            assert!(polled.poll(&mut cx).is_pending());
        }
        assert_eq!(probe.lock().unwrap().polls, 1);
        assert_eq!(task.wakes(), 0);

        let inner_waker = probe.lock().unwrap().waker.take().unwrap();
        probe.lock().unwrap().ready = true;
        inner_waker.wake();

        assert_eq!(task.wakes(), 1, "the task was woken");
        assert!(polled.poll(&mut cx).is_ready());
        assert_eq!(probe.lock().unwrap().polls, 2);
    }
}
