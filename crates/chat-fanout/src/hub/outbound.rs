//! The receiving end of a stream, which is the response body of its call:
//! a status that ends the stream first, then `ready`, then catch-up frames,
//! then the live queue.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::oneshot;
use tokio_stream::Stream;
use tonic::Status;

use chat_domain::Timestamp;

use super::streams::{Ending, StreamId};
use super::Hub;
use crate::frame::Frame;
use crate::queue;

/// The receiving end of a stream: the frames the hub queued for it, ended
/// early by a status when the hub closes it. Dropping it (the client went
/// away) unregisters the stream.
pub struct OutboundStream {
    id: StreamId,
    hub: Arc<Hub>,
    queue: queue::Receiver<Frame>,
    /// Missed messages being caught up on; they go out before anything in
    /// `queue` but the `ready` event. `None` once the catch-up is over.
    catch_up: Option<queue::Receiver<Frame>>,
    end: oneshot::Receiver<Box<Status>>,
    /// Whether `ready`, always first in `queue`, has gone out.
    ready_sent: bool,
    finished: bool,
}

impl OutboundStream {
    pub(super) fn new(
        id: StreamId,
        hub: Arc<Hub>,
        queue: queue::Receiver<Frame>,
        catch_up: queue::Receiver<Frame>,
        end: oneshot::Receiver<Box<Status>>,
    ) -> Self {
        Self {
            id,
            hub,
            queue,
            catch_up: Some(catch_up),
            end,
            ready_sent: false,
            finished: false,
        }
    }
}

impl Stream for OutboundStream {
    type Item = Result<Frame, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if let Poll::Ready(Ok(status)) = Pin::new(&mut self.end).poll(cx) {
            self.finished = true;
            return Poll::Ready(Some(Err(*status)));
        }
        if self.ready_sent {
            if let Some(catch_up) = &mut self.catch_up {
                match catch_up.poll_recv(cx) {
                    Poll::Ready(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                    Poll::Ready(None) => self.catch_up = None,
                    Poll::Pending => {}
                }
            }
        }
        match self.queue.poll_recv(cx) {
            Poll::Ready(Some(frame)) => {
                self.ready_sent = true;
                if let Some(sent_at) = frame.sent_at() {
                    self.hub
                        .metrics
                        .observe_delivery(Timestamp::now().since(sent_at));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for OutboundStream {
    fn drop(&mut self) {
        let mut state = self.hub.lock();
        self.hub
            .close_all_of(&mut state, vec![(self.id, Ending::Gone)]);
    }
}
