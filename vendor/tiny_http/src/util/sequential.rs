use std::io::Result as IoResult;
use std::io::{BufRead, Read, Write};

// gatehouse patch: a lighter channel than std's mpsc (see `handoff`).
use super::handoff::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use std::mem;

pub struct SequentialReaderBuilder<R>
where
    R: Read + Send,
{
    inner: SequentialReaderBuilderInner<R>,
}

enum SequentialReaderBuilderInner<R>
where
    R: Read + Send,
{
    First(R),
    NotFirst(Receiver<R>),
}

pub struct SequentialReader<R>
where
    R: Read + Send,
{
    inner: SequentialReaderInner<R>,
    next: Sender<R>,
}

enum SequentialReaderInner<R>
where
    R: Read + Send,
{
    MyTurn(R),
    Waiting(Receiver<R>),
    Empty,
}

pub struct SequentialWriterBuilder<W>
where
    W: Write + Send,
{
    writer: Arc<Mutex<W>>,
    next_trigger: Option<Receiver<Turn>>,
}

pub struct SequentialWriter<W>
where
    W: Write + Send,
{
    trigger: Option<Receiver<Turn>>,
    writer: Arc<Mutex<W>>,
    on_finish: Sender<Turn>,
}

/// gatehouse patch: what the writer before hands on. `Done` when it is
/// finished (dropped); before that, possibly `Finish`: the rest of its
/// work, for whoever waits for its turn to run (the connection's own
/// thread, when a request thread stopped waiting for a slow client).
pub enum Turn {
    Done,
    Finish(Box<dyn FnOnce() + Send>),
}

/// gatehouse patch: waits for the writer before to be done, running what
/// it hands on meanwhile. A closed channel means it is gone: done as well.
fn wait_for(previous: &Receiver<Turn>) {
    while let Ok(Turn::Finish(rest)) = previous.recv() {
        rest();
    }
}

impl<R: Read + Send> SequentialReaderBuilder<R> {
    pub fn new(reader: R) -> SequentialReaderBuilder<R> {
        SequentialReaderBuilder {
            inner: SequentialReaderBuilderInner::First(reader),
        }
    }
}

impl<W: Write + Send> SequentialWriterBuilder<W> {
    pub fn new(writer: W) -> SequentialWriterBuilder<W> {
        SequentialWriterBuilder {
            writer: Arc::new(Mutex::new(writer)),
            next_trigger: None,
        }
    }
}

impl<W: Write + Send> SequentialWriterBuilder<W> {
    /// gatehouse patch: waits until the last writer handed out is done (its
    /// answer written, or given up), and with it every one before it.
    pub fn wait_done(&mut self) {
        if let Some(previous) = self.next_trigger.take() {
            wait_for(&previous);
        }
    }
}

impl<R: Read + Send> Iterator for SequentialReaderBuilder<R> {
    type Item = SequentialReader<R>;

    fn next(&mut self) -> Option<SequentialReader<R>> {
        let (tx, rx) = channel();

        let inner = mem::replace(&mut self.inner, SequentialReaderBuilderInner::NotFirst(rx));

        match inner {
            SequentialReaderBuilderInner::First(reader) => Some(SequentialReader {
                inner: SequentialReaderInner::MyTurn(reader),
                next: tx,
            }),

            SequentialReaderBuilderInner::NotFirst(previous) => Some(SequentialReader {
                inner: SequentialReaderInner::Waiting(previous),
                next: tx,
            }),
        }
    }
}

impl<W: Write + Send> Iterator for SequentialWriterBuilder<W> {
    type Item = SequentialWriter<W>;
    fn next(&mut self) -> Option<SequentialWriter<W>> {
        let (tx, rx) = channel();
        let mut next_next_trigger = Some(rx);
        ::std::mem::swap(&mut next_next_trigger, &mut self.next_trigger);

        Some(SequentialWriter {
            trigger: next_next_trigger,
            writer: self.writer.clone(),
            on_finish: tx,
        })
    }
}

/// gatehouse patch: the reader before this one went without handing the
/// stream on (its thread panicked): the connection cannot go on.
fn lost() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the connection was lost")
}

impl<W: Write + Send> SequentialWriter<W> {
    /// gatehouse patch: where to hand the rest of this writer's work (see
    /// [`Turn::Finish`]); the work must own this writer, whose drop then
    /// says it is done.
    pub fn finisher(&self) -> Sender<Turn> {
        self.on_finish.clone()
    }
}

impl<R: Read + Send> SequentialReader<R> {
    /// gatehouse patch: waits until the readers before this one are done
    /// with the stream, without reading from it.
    pub fn wait_turn(&mut self) -> IoResult<()> {
        if let SequentialReaderInner::Waiting(ref mut recv) = self.inner {
            let reader = recv.recv().map_err(|_| lost())?;
            self.inner = SequentialReaderInner::MyTurn(reader);
        }
        match self.inner {
            SequentialReaderInner::MyTurn(_) => Ok(()),
            _ => Err(lost()),
        }
    }
}

impl<R: Read + Send> Read for SequentialReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        self.wait_turn()?;
        match self.inner {
            SequentialReaderInner::MyTurn(ref mut reader) => reader.read(buf),
            _ => Err(lost()),
        }
    }
}

// gatehouse patch: line-by-line header reading straight from the buffer.
impl<R: BufRead + Send> BufRead for SequentialReader<R> {
    fn fill_buf(&mut self) -> IoResult<&[u8]> {
        self.wait_turn()?;
        match self.inner {
            SequentialReaderInner::MyTurn(ref mut reader) => reader.fill_buf(),
            _ => Err(lost()),
        }
    }

    fn consume(&mut self, amt: usize) {
        if let SequentialReaderInner::MyTurn(ref mut reader) = self.inner {
            reader.consume(amt);
        }
    }
}

impl<W: Write + Send> Write for SequentialWriter<W> {
    // gatehouse patch: no panics. The writer before this one always
    // signals when it goes (its `Drop`), so a closed channel only means it is
    // gone too, and this one's turn has come; a poisoned lock still holds a
    // usable writer.
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        if let Some(v) = self.trigger.take() {
            wait_for(&v);
        }
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        if let Some(v) = self.trigger.take() {
            wait_for(&v);
        }
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .flush()
    }
}

impl<R> Drop for SequentialReader<R>
where
    R: Read + Send,
{
    fn drop(&mut self) {
        let inner = mem::replace(&mut self.inner, SequentialReaderInner::Empty);

        match inner {
            SequentialReaderInner::MyTurn(reader) => {
                self.next.send(reader).ok();
            }
            SequentialReaderInner::Waiting(recv) => {
                // gatehouse patch: a reader before this one that went
                // without handing the stream on leaves nothing to pass.
                if let Ok(reader) = recv.recv() {
                    self.next.send(reader).ok();
                }
            }
            SequentialReaderInner::Empty => (),
        }
    }
}

impl<W> Drop for SequentialWriter<W>
where
    W: Write + Send,
{
    fn drop(&mut self) {
        self.on_finish.send(Turn::Done).ok();
    }
}
