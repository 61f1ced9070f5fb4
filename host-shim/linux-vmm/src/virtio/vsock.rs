//! virtio-vsock (virtio 1.2 section 5.10), stream sockets only, with a
//! host side like Firecracker's "hybrid" vsock: a guest that connects to the
//! host (CID 2) on port P is connected to the host's unix socket `PATH_P`
//! (`hyp-vmm run --vsock CID,PATH`). Packets are parsed and built with the
//! `virtio-vsock` crate; the connections' state machine and their credit
//! are this file's. The other way, as Firecracker too: a host program
//! connects to the unix socket PATH itself, the device's listener, and
//! writes `CONNECT P` and a newline; the device sends the guest a REQUEST
//! to its port P (from a host port of its own, from 2^30 up) and, on the
//! guest's RESPONSE, writes `OK <host port>` and a newline back, after which
//! the socket carries the connection; the guest's RST closes the socket.
//!
//! A connection: the guest's REQUEST makes the device connect a unix socket
//! (non-blocking: a full backlog is a refusal) and answer RESPONSE, or RST if
//! nothing listens there. Data (RW) goes both ways under virtio-vsock's
//! credit: each side says how much it can buffer (`buf_alloc`) and how much
//! it has passed on (`fwd_cnt`), and the other never has more than that in
//! flight. The guest gets `BUFFER` bytes per connection: what the socket
//! does not take at once waits in the connection's buffer, which the credit
//! keeps within `BUFFER`; a guest sending past its credit is reset. The
//! device sends the guest no more than the guest's own credit allows, so
//! data from the socket waits in the socket (the peer's writes block) until
//! the guest makes room. SHUTDOWN half-closes: the guest's "no more sending"
//! shuts the socket's write side once the buffer drained, the socket's end
//! of file is the guest's SHUTDOWN(send); a SHUTDOWN of both directions is
//! answered with RST once the buffer drained, which Linux waits for to
//! close. RST ends a connection either way; a packet for no connection is
//! answered with RST.
//!
//! Bounds: at most `MAX_CONNECTIONS` connections (a REQUEST beyond is
//! refused with RST, a host program's CONNECT beyond is closed), `BUFFER`
//! bytes each, `MAX_PENDING_RESETS` RSTs waiting for receive buffers
//! (beyond, a RST is dropped), `MAX_CALLERS` host programs that have not
//! yet sent their (at most 32-byte) CONNECT line, one packet buffer.
//!
//! Threads: transmit packets are served in the vCPU thread that notified the
//! queue (and what that makes owed, a RESPONSE, is sent at once if the guest
//! has receive buffers); the sockets are in an epoll set whose fd the bus's
//! backend thread polls (`backend_fd`), calling `poll_backend`. A socket is
//! in the set only while the device wants its events: readable while the
//! guest has credit for more, writable while data waits for it; with no
//! receive buffer left the device stops asking to be polled until the guest
//! notifies its receive queue.

use super::{next_chain, serve_queue, Chain, DeviceError, DeviceMemory, VirtioDevice};
use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::ops::Bound;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use virtio_bindings::virtio_ids::VIRTIO_ID_VSOCK;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use virtio_vsock::packet::{VsockPacket, PKT_HEADER_SIZE};

pub const RECEIVE: usize = 0;
pub const TRANSMIT: usize = 1;
pub const EVENT: usize = 2;
const QUEUE_SIZE: u16 = 256;
const EVENT_QUEUE_SIZE: u16 = 16;
/// The host's CID: the guest reaches the unix sockets there.
pub const HOST_CID: u64 = 2;
/// `VIRTIO_VSOCK_TYPE_STREAM`, the only type offered.
pub const TYPE_STREAM: u16 = 1;
pub const OP_REQUEST: u16 = 1;
pub const OP_RESPONSE: u16 = 2;
pub const OP_RST: u16 = 3;
pub const OP_SHUTDOWN: u16 = 4;
pub const OP_RW: u16 = 5;
pub const OP_CREDIT_UPDATE: u16 = 6;
pub const OP_CREDIT_REQUEST: u16 = 7;
/// SHUTDOWN's flags: the sender will receive no more, send no more.
pub const SHUTDOWN_RECEIVE: u32 = 1;
pub const SHUTDOWN_SEND: u32 = 2;
/// What the device buffers per connection for the guest (its `buf_alloc`).
pub const BUFFER: u32 = 256 << 10;
/// The most connections at once.
pub const MAX_CONNECTIONS: usize = 64;
/// The most data in one packet either way (Linux's
/// `VIRTIO_VSOCK_MAX_PKT_BUF_SIZE`).
pub const MAX_PACKET_DATA: u32 = 64 << 10;
/// RSTs owed for packets that match no connection, at most.
pub const MAX_PENDING_RESETS: usize = 256;
/// Host programs connected to the listener that have not yet named a
/// port, at most (more are closed at once).
pub const MAX_CALLERS: usize = 8;
/// The longest `CONNECT P` line a host program may send.
const MAX_CONNECT_LINE: usize = 32;
/// The host ports of host-initiated connections start here (as
/// Firecracker's), above what a guest's own ports are likely to be.
const FIRST_HOST_PORT: u32 = 1 << 30;
/// The guest is told of the room it has again (CREDIT_UPDATE) once this much
/// was passed on since it was last told: a guest out of credit has at least
/// this much coming once the socket took a quarter of the buffer.
const CREDIT_UPDATE_AFTER: u32 = BUFFER / 4;

/// A connection's ends: the guest's port and the host's.
#[derive(Clone, Copy, Debug, Eq, Ord, PartialEq, PartialOrd)]
pub struct Ends {
    pub guest_port: u32,
    pub host_port: u32,
}

/// One connection of the guest to a unix socket.
struct Connection {
    socket: UnixStream,
    /// Guest data the socket has not taken yet (at most `BUFFER`).
    waiting: VecDeque<u8>,
    /// Bytes of guest data received and passed on to the socket (wrapping).
    received: u32,
    forwarded: u32,
    /// `forwarded` as the guest was last told.
    forwarded_told: u32,
    /// The guest's receive buffer and what it has consumed of what it was
    /// sent (its `buf_alloc` and `fwd_cnt`), and what it was sent.
    peer_buffer: u32,
    peer_forwarded: u32,
    sent: u32,
    owe_response: bool,
    /// A host program asked for this connection (through the listener): the
    /// guest is owed a REQUEST, and the connection carries nothing until the
    /// guest's RESPONSE.
    owe_request: bool,
    established: bool,
    owe_credit_update: bool,
    owe_credit_request: bool,
    /// SHUTDOWN(send) owed: the socket reached its end of file.
    owe_end_of_file: bool,
    /// The socket's end of file was read.
    socket_ended: bool,
    /// The guest will send no more (the socket's write side is shut once
    /// `waiting` drained), receive no more.
    guest_sent_all: bool,
    guest_receives_no_more: bool,
    write_shut: bool,
    /// The events the epoll set watches for (0: not in the set).
    interest: u32,
    /// The socket was seen readable, writable (by the last epoll look).
    readable: bool,
}

impl Connection {
    /// A connection the guest asked for (its REQUEST): the RESPONSE is owed.
    fn new(socket: UnixStream, peer_buffer: u32, peer_forwarded: u32) -> Connection {
        Connection {
            socket,
            waiting: VecDeque::new(),
            received: 0,
            forwarded: 0,
            forwarded_told: 0,
            peer_buffer,
            peer_forwarded,
            sent: 0,
            owe_response: true,
            owe_request: false,
            established: true,
            owe_credit_update: false,
            owe_credit_request: false,
            owe_end_of_file: false,
            socket_ended: false,
            guest_sent_all: false,
            guest_receives_no_more: false,
            write_shut: false,
            interest: 0,
            readable: false,
        }
    }

    /// A connection a host program asked for: the REQUEST is owed.
    fn called(socket: UnixStream) -> Connection {
        Connection { owe_response: false, owe_request: true, established: false, ..Connection::new(socket, 0, 0) }
    }

    /// What the guest may still send: its credit.
    fn guest_credit(&self) -> u32 {
        BUFFER.saturating_sub(self.waiting.len() as u32)
    }

    /// What the device may still send the guest.
    fn peer_credit(&self) -> u32 {
        let in_flight = self.sent.wrapping_sub(self.peer_forwarded);
        self.peer_buffer.saturating_sub(in_flight)
    }

    /// Whether the device reads the socket for the guest now.
    fn wants_to_read(&self) -> bool {
        self.established
            && !self.owe_response
            && !self.socket_ended
            && !self.guest_receives_no_more
            && self.peer_credit() > 0
    }

    /// Passes waiting guest data to the socket, as much as it takes; shuts
    /// its write side once all is passed and the guest sent all. False if
    /// the socket failed (the peer is gone).
    fn flush(&mut self) -> bool {
        while !self.waiting.is_empty() {
            let (front, _) = self.waiting.as_slices();
            match self.socket.write(front) {
                Ok(written) => {
                    self.waiting.drain(..written);
                    self.forwarded = self.forwarded.wrapping_add(written as u32);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if self.waiting.is_empty() && self.guest_sent_all && !self.write_shut {
            let _ = self.socket.shutdown(std::net::Shutdown::Write);
            self.write_shut = true;
        }
        if self.forwarded.wrapping_sub(self.forwarded_told) >= CREDIT_UPDATE_AFTER {
            self.owe_credit_update = true;
        }
        true
    }

    /// Guest data for the socket: what it takes at once goes, the rest
    /// waits (the credit keeps it within `BUFFER`). False if the socket failed.
    fn pass_on(&mut self, data: &[u8]) -> bool {
        let mut taken = 0;
        if self.waiting.is_empty() {
            taken = match self.socket.write(data) {
                Ok(written) => written,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => 0,
                Err(_) => return false,
            };
            self.forwarded = self.forwarded.wrapping_add(taken as u32);
        }
        self.waiting.extend(&data[taken..]);
        self.flush()
    }

    /// Whether the guest's side is done with the connection and all its
    /// data reached the socket: the device then resets it (Linux's close
    /// waits for that RST).
    fn finished(&self) -> bool {
        self.guest_sent_all && self.guest_receives_no_more && self.waiting.is_empty()
    }

    /// Whether a control packet is owed.
    fn owes_control(&self) -> bool {
        self.owe_response
            || self.owe_request
            || self.owe_end_of_file
            || self.owe_credit_update
            || self.owe_credit_request
    }
}

/// What the device moved, for the VMM's report and the tests.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct VsockCounts {
    pub connections: u64,
    pub resets_sent: u64,
    /// Packets dropped: another source CID than the guest's, or an RST
    /// owed while `MAX_PENDING_RESETS` already wait.
    pub dropped: u64,
}

/// A host program connected to the listener that has not yet said which
/// guest port it wants (`CONNECT P` and a newline).
struct Caller {
    socket: UnixStream,
    line: Vec<u8>,
}

pub struct Vsock {
    guest_cid: u64,
    /// Connections to port P go to the unix socket `{socket_prefix}_{P}`.
    socket_prefix: String,
    /// Where host programs connect to reach the guest: the unix socket
    /// `{socket_prefix}` itself.
    listener: UnixListener,
    callers: Vec<Caller>,
    /// The host port the next host-initiated connection gets.
    next_host_port: u32,
    connections: BTreeMap<Ends, Connection>,
    /// RSTs owed for packets that matched no connection, or for connections
    /// already closed: the CID each comes from (the one the guest
    /// addressed), and the ends.
    resets: VecDeque<(u64, Ends)>,
    /// The connection whose data goes first in the next receive buffer (the
    /// one after the last served: round robin). None: the first.
    turn: Option<Ends>,
    epoll: OwnedFd,
    receive_starved: bool,
    /// One packet's data, allocated once.
    scratch: Vec<u8>,
    pub counts: VsockCounts,
}

fn epoll_control(epoll: &OwnedFd, operation: i32, fd: RawFd, events: u32) {
    let mut event = libc::epoll_event { events, u64: fd as u64 };
    // SAFETY: `event` is a valid epoll_event for the call; both fds are open.
    // A failure (the fd already gone from the set) leaves nothing to undo.
    unsafe { libc::epoll_ctl(epoll.as_raw_fd(), operation, fd, &mut event) };
}

/// Connects a non-blocking unix stream socket to `path`: a listener whose
/// backlog is full refuses it (`EAGAIN`) instead of blocking the vCPU.
fn connect_unix(path: &str) -> std::io::Result<UnixStream> {
    // SAFETY: socket(2) with constant arguments; the fd is owned at once.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_un is plain data; all zeros is a valid value.
    let mut address: libc::sockaddr_un = unsafe { core::mem::zeroed() };
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_bytes();
    if bytes.len() >= address.sun_path.len() || bytes.contains(&0) {
        return Err(std::io::Error::new(ErrorKind::InvalidInput, "the socket path is too long"));
    }
    for (slot, &byte) in address.sun_path.iter_mut().zip(bytes) {
        *slot = byte as libc::c_char;
    }
    let length = (core::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    // SAFETY: `address` is a valid sockaddr_un of `length` bytes.
    let result = unsafe { libc::connect(socket.as_raw_fd(), (&raw const address).cast(), length) };
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(UnixStream::from(socket))
}

impl Vsock {
    /// The device of a guest with CID `guest_cid` whose connections to host
    /// port P go to the unix socket `{socket_prefix}_{P}`.
    pub fn new(guest_cid: u64, socket_prefix: &str) -> Result<Vsock, String> {
        // A socket left by an earlier run is replaced; any other file is not.
        if std::fs::symlink_metadata(socket_prefix).is_ok_and(|meta| meta.file_type().is_socket()) {
            let _ = std::fs::remove_file(socket_prefix);
        }
        let listener =
            UnixListener::bind(socket_prefix).map_err(|e| format!("the vsock listener {socket_prefix}: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| format!("the vsock listener {socket_prefix}: {e}"))?;
        // SAFETY: epoll_create1 with a constant flag; the fd is owned at once.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(format!("epoll_create1 for virtio-vsock: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: `epoll` is a new fd nobody else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        epoll_control(&epoll, libc::EPOLL_CTL_ADD, listener.as_raw_fd(), libc::EPOLLIN as u32);
        Ok(Vsock {
            guest_cid,
            socket_prefix: socket_prefix.to_owned(),
            listener,
            callers: Vec::new(),
            next_host_port: FIRST_HOST_PORT,
            connections: BTreeMap::new(),
            resets: VecDeque::new(),
            turn: None,
            epoll,
            receive_starved: false,
            scratch: vec![0; MAX_PACKET_DATA as usize],
            counts: VsockCounts::default(),
        })
    }

    /// Takes the host programs waiting at the listener (each then names a
    /// port); beyond `MAX_CALLERS` waiting, a new one is closed at once.
    fn accept_callers(&mut self) {
        while let Ok((socket, _)) = self.listener.accept() {
            if self.callers.len() >= MAX_CALLERS || socket.set_nonblocking(true).is_err() {
                continue;
            }
            epoll_control(&self.epoll, libc::EPOLL_CTL_ADD, socket.as_raw_fd(), libc::EPOLLIN as u32);
            self.callers.push(Caller { socket, line: Vec::new() });
            // Its line may be there already.
            self.hear_caller(self.callers.len() - 1);
        }
    }

    /// Reads the `CONNECT P` line of the caller at `index` (a byte at a
    /// time: what follows the line is the connection's data); once whole,
    /// the guest is owed a REQUEST for port P. A caller that ends, errs, or
    /// sends anything else is closed.
    fn hear_caller(&mut self, index: usize) {
        let Some(caller) = self.callers.get_mut(index) else { return };
        let mut byte = [0u8];
        let complete = loop {
            match caller.socket.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => break Some(true),
                Ok(1) if caller.line.len() < MAX_CONNECT_LINE => caller.line.push(byte[0]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                _ => break Some(false),
            }
        };
        let Some(complete) = complete else { return };
        let caller = self.callers.swap_remove(index);
        let port = std::str::from_utf8(&caller.line)
            .ok()
            .and_then(|line| line.trim_end_matches('\r').strip_prefix("CONNECT "))
            .and_then(|port| port.parse::<u32>().ok());
        let (true, Some(guest_port)) = (complete, port) else { return };
        if self.connections.len() >= MAX_CONNECTIONS {
            return;
        }
        let mut ends = Ends { guest_port, host_port: self.next_host_port };
        while self.connections.contains_key(&ends) {
            ends.host_port = ends.host_port.checked_add(1).unwrap_or(FIRST_HOST_PORT);
        }
        self.next_host_port = ends.host_port.checked_add(1).unwrap_or(FIRST_HOST_PORT);
        let mut connection = Connection::called(caller.socket);
        // The socket is in the epoll set for its line: `watch` takes it out
        // until the guest answers.
        connection.interest = libc::EPOLLIN as u32;
        self.connections.insert(ends, connection);
        self.counts.connections += 1;
        self.watch(ends);
    }

    /// How many connections are open (the tests').
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Owes the guest an RST from the host for `ends` (bounded: beyond, it
    /// is dropped).
    fn owe_reset(&mut self, ends: Ends) {
        self.owe_reset_from(HOST_CID, ends);
    }

    fn owe_reset_from(&mut self, cid: u64, ends: Ends) {
        if self.resets.len() < MAX_PENDING_RESETS {
            self.resets.push_back((cid, ends));
        } else {
            self.counts.dropped += 1;
        }
    }

    /// Ends the connection at `ends` (if any) and owes the guest its RST.
    fn reset(&mut self, ends: Ends) {
        self.connections.remove(&ends);
        self.owe_reset(ends);
    }

    /// Makes the epoll set watch what `ends`' connection wants now.
    fn watch(&mut self, ends: Ends) {
        let Some(connection) = self.connections.get_mut(&ends) else { return };
        let mut interest = 0;
        if connection.wants_to_read() {
            interest |= libc::EPOLLIN as u32;
        }
        if !connection.waiting.is_empty() {
            interest |= libc::EPOLLOUT as u32;
        }
        if interest == connection.interest {
            return;
        }
        let fd = connection.socket.as_raw_fd();
        let operation = match (connection.interest, interest) {
            (0, _) => libc::EPOLL_CTL_ADD,
            (_, 0) => libc::EPOLL_CTL_DEL,
            _ => libc::EPOLL_CTL_MOD,
        };
        epoll_control(&self.epoll, operation, fd, interest);
        connection.interest = interest;
    }

    /// One packet the guest sent.
    fn transmit(&mut self, mut chain: Chain<'_>, memory: &DeviceMemory) -> Result<u32, DeviceError> {
        let packet = VsockPacket::from_tx_virtq_chain(memory, &mut chain, MAX_PACKET_DATA)
            .map_err(|e| DeviceError::Request(format!("a transmit packet: {e}")))?;
        let ends = Ends { guest_port: packet.src_port(), host_port: packet.dst_port() };
        if packet.src_cid() != self.guest_cid {
            // Not from this guest's address: nobody to answer.
            self.counts.dropped += 1;
            return Ok(0);
        }
        if packet.dst_cid() != HOST_CID {
            // Nobody but the host is here: an RST from the CID the guest
            // addressed (one from the host could end its connections there).
            if packet.op() != OP_RST {
                self.owe_reset_from(packet.dst_cid(), ends);
            }
            return Ok(0);
        }
        if packet.op() == OP_RST {
            self.connections.remove(&ends);
            return Ok(0);
        }
        if packet.type_() != TYPE_STREAM {
            self.reset(ends);
            return Ok(0);
        }
        if packet.op() == OP_REQUEST {
            self.connect(ends, packet.buf_alloc(), packet.fwd_cnt());
            return Ok(0);
        }
        let Some(connection) = self.connections.get_mut(&ends) else {
            self.owe_reset(ends);
            return Ok(0);
        };
        connection.peer_buffer = packet.buf_alloc();
        connection.peer_forwarded = packet.fwd_cnt();
        let healthy = match packet.op() {
            // The guest accepts a host program's connection: the program
            // learns it with `OK` and the connection's host port.
            OP_RESPONSE if !connection.established && !connection.owe_request => {
                connection.established = true;
                let line = format!("OK {}\n", ends.host_port);
                matches!(connection.socket.write(line.as_bytes()), Ok(written) if written == line.len())
            }
            _ if !connection.established => false,
            OP_RW => {
                let length = packet.len() as usize;
                if connection.guest_sent_all || packet.len() > connection.guest_credit() {
                    // Data after the guest's SHUTDOWN(send), or past its credit.
                    false
                } else {
                    let data = &mut self.scratch[..length];
                    if let Some(slice) = packet.data_slice() {
                        slice.copy_to(data);
                    }
                    connection.received = connection.received.wrapping_add(packet.len());
                    connection.pass_on(data)
                }
            }
            OP_CREDIT_UPDATE => true,
            OP_CREDIT_REQUEST => {
                connection.owe_credit_update = true;
                true
            }
            OP_SHUTDOWN => {
                let flags = packet.flags();
                connection.guest_receives_no_more |= flags & SHUTDOWN_RECEIVE != 0;
                connection.guest_sent_all |= flags & SHUTDOWN_SEND != 0;
                connection.flush()
            }
            // A RESPONSE (the host made no request) or an unknown op.
            _ => false,
        };
        if !healthy || connection.finished() {
            self.reset(ends);
        } else {
            self.watch(ends);
        }
        Ok(0)
    }

    /// The guest's REQUEST: connects its unix socket, or owes an RST.
    fn connect(&mut self, ends: Ends, peer_buffer: u32, peer_forwarded: u32) {
        if self.connections.remove(&ends).is_some() {
            // A second request for a live connection: both are refused.
            self.owe_reset(ends);
            return;
        }
        if self.connections.len() >= MAX_CONNECTIONS {
            self.owe_reset(ends);
            return;
        }
        match connect_unix(&format!("{}_{}", self.socket_prefix, ends.host_port)) {
            Ok(socket) => {
                self.connections.insert(ends, Connection::new(socket, peer_buffer, peer_forwarded));
                self.counts.connections += 1;
            }
            Err(_) => self.owe_reset(ends),
        }
    }

    /// Notes which sockets the epoll set says are ready (without waiting):
    /// passes guest data to the writable ones, marks the readable ones.
    fn look_at_sockets(&mut self) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
        // SAFETY: `events` has room for 16 entries; a zero timeout does not block.
        let count = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), 16, 0) };
        let ready = &events[..count.max(0) as usize];
        let mut broken = Vec::new();
        let mut callers_heard = Vec::new();
        for event in ready {
            let fd = event.u64 as RawFd;
            let flags = event.events;
            if fd == self.listener.as_raw_fd() {
                self.accept_callers();
                continue;
            }
            if self.callers.iter().any(|caller| caller.socket.as_raw_fd() == fd) {
                callers_heard.push(fd);
                continue;
            }
            let Some((&ends, connection)) = self.connections.iter_mut().find(|(_, c)| c.socket.as_raw_fd() == fd)
            else {
                continue;
            };
            if flags & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                connection.readable = true;
            }
            if flags & (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 && !connection.flush() {
                broken.push(ends);
            }
        }
        for ends in broken {
            self.reset(ends);
        }
        for fd in callers_heard {
            if let Some(index) = self.callers.iter().position(|caller| caller.socket.as_raw_fd() == fd) {
                self.hear_caller(index);
            }
        }
        let finished: Vec<Ends> = self.connections.iter().filter(|(_, c)| c.finished()).map(|(&e, _)| e).collect();
        for ends in finished {
            self.reset(ends);
        }
        let all: Vec<Ends> = self.connections.keys().copied().collect();
        for ends in all {
            self.watch(ends);
        }
    }

    /// Whether some packet is owed to the guest or may be read for it.
    fn has_work(&self) -> bool {
        !self.resets.is_empty()
            || self.connections.values().any(|c| c.owes_control() || (c.readable && c.wants_to_read()))
    }

    /// Fills one receive packet with what is owed or read first; None if
    /// nothing after all (a socket had no data).
    fn fill(&mut self, packet: &mut VsockPacket<'_, ()>) -> Option<u32> {
        let header = |packet: &mut VsockPacket<'_, ()>, guest_cid: u64, ends: Ends, op: u16| {
            let _ = packet.set_header_from_raw(&[0; PKT_HEADER_SIZE]);
            packet
                .set_src_cid(HOST_CID)
                .set_dst_cid(guest_cid)
                .set_src_port(ends.host_port)
                .set_dst_port(ends.guest_port)
                .set_type(TYPE_STREAM)
                .set_op(op)
                .set_buf_alloc(BUFFER);
        };
        if let Some((cid, ends)) = self.resets.pop_front() {
            header(packet, self.guest_cid, ends, OP_RST);
            packet.set_src_cid(cid);
            self.counts.resets_sent += 1;
            return Some(PKT_HEADER_SIZE as u32);
        }
        let guest_cid = self.guest_cid;
        let room = packet.data_slice().map_or(0, |slice| slice.len()).min(MAX_PACKET_DATA as usize);
        let mut broken = None;
        let mut filled = None;
        let order: Vec<Ends> = match self.turn {
            Some(turn) => {
                self.connections.range(turn..).chain(self.connections.range(..turn)).map(|(&e, _)| e).collect()
            }
            None => self.connections.keys().copied().collect(),
        };
        for ends in order {
            let Some(connection) = self.connections.get_mut(&ends) else { continue };
            let control = if connection.owe_response {
                connection.owe_response = false;
                Some((OP_RESPONSE, 0))
            } else if connection.owe_request {
                connection.owe_request = false;
                Some((OP_REQUEST, 0))
            } else if connection.owe_end_of_file {
                connection.owe_end_of_file = false;
                Some((OP_SHUTDOWN, SHUTDOWN_SEND))
            } else if connection.owe_credit_update {
                connection.owe_credit_update = false;
                Some((OP_CREDIT_UPDATE, 0))
            } else if connection.owe_credit_request {
                connection.owe_credit_request = false;
                Some((OP_CREDIT_REQUEST, 0))
            } else {
                None
            };
            if let Some((op, flags)) = control {
                header(packet, guest_cid, ends, op);
                packet.set_flags(flags).set_fwd_cnt(connection.forwarded);
                connection.forwarded_told = connection.forwarded;
                filled = Some((ends, PKT_HEADER_SIZE as u32));
                break;
            }
            if !(connection.readable && connection.wants_to_read()) {
                continue;
            }
            let most = room.min(connection.peer_credit() as usize);
            if most == 0 {
                // A receive buffer without data room: nothing to read into.
                connection.readable = false;
                continue;
            }
            match connection.socket.read(&mut self.scratch[..most]) {
                Ok(0) => {
                    connection.socket_ended = true;
                    header(packet, guest_cid, ends, OP_SHUTDOWN);
                    packet.set_flags(SHUTDOWN_SEND).set_fwd_cnt(connection.forwarded);
                    connection.forwarded_told = connection.forwarded;
                    filled = Some((ends, PKT_HEADER_SIZE as u32));
                    break;
                }
                Ok(count) => {
                    header(packet, guest_cid, ends, OP_RW);
                    packet.set_len(count as u32).set_fwd_cnt(connection.forwarded);
                    if let Some(slice) = packet.data_slice() {
                        slice.copy_from(&self.scratch[..count]);
                    }
                    connection.forwarded_told = connection.forwarded;
                    connection.sent = connection.sent.wrapping_add(count as u32);
                    if connection.peer_credit() == 0 {
                        connection.owe_credit_request = true;
                    }
                    filled = Some((ends, (PKT_HEADER_SIZE + count) as u32));
                    break;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                    connection.readable = false;
                }
                Err(_) => {
                    broken = Some(ends);
                    break;
                }
            }
        }
        if let Some(ends) = broken {
            self.connections.remove(&ends);
            header(packet, guest_cid, ends, OP_RST);
            self.counts.resets_sent += 1;
            return Some(PKT_HEADER_SIZE as u32);
        }
        let (ends, length) = filled?;
        self.watch(ends);
        self.turn = self.connections.range((Bound::Excluded(ends), Bound::Unbounded)).next().map(|(&e, _)| e);
        Some(length)
    }

    /// Sends what is owed and what the sockets have into the receive
    /// buffers the driver offered. Whether to interrupt.
    fn receive(&mut self, queue: &mut Queue, memory: &DeviceMemory) -> Result<bool, DeviceError> {
        self.look_at_sockets();
        let mut used = false;
        while self.has_work() {
            let Some(mut chain) = next_chain(queue, memory)? else {
                if queue.enable_notification(memory)? {
                    continue;
                }
                self.receive_starved = true;
                break;
            };
            let head = chain.head_index();
            let mut packet = VsockPacket::from_rx_virtq_chain(memory, &mut chain, MAX_PACKET_DATA)
                .map_err(|e| DeviceError::Request(format!("a receive buffer: {e}")))?;
            match self.fill(&mut packet) {
                Some(length) => {
                    queue.add_used(memory, head, length)?;
                    used = true;
                }
                None => queue.go_to_previous_position(),
            }
        }
        Ok(used && queue.needs_notification(memory)?)
    }
}

impl Drop for Vsock {
    /// The listener's socket file goes with it.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket_prefix);
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_VSOCK
    }

    fn name(&self) -> &'static str {
        "virtio-vsock"
    }

    fn queue_sizes(&self) -> &'static [u16] {
        &[QUEUE_SIZE, QUEUE_SIZE, EVENT_QUEUE_SIZE]
    }

    /// Stream sockets only (no VIRTIO_VSOCK_F_SEQPACKET).
    fn features(&self) -> u64 {
        0
    }

    /// `struct virtio_vsock_config`: the guest's CID.
    fn config(&self) -> Vec<u8> {
        self.guest_cid.to_le_bytes().to_vec()
    }

    fn process_queue(
        &mut self,
        index: usize,
        queues: &mut [Queue],
        memory: &DeviceMemory,
    ) -> Result<bool, DeviceError> {
        let [receive, transmit, _event] = queues else {
            return Err(DeviceError::Request(format!("no queue {index}")));
        };
        match index {
            TRANSMIT => {
                let sent = serve_queue(transmit, memory, |chain| self.transmit(chain, memory))?;
                // Answers (RESPONSE, RST) go out at once if there is room.
                Ok(self.receive(receive, memory)? | sent)
            }
            RECEIVE => {
                self.receive_starved = false;
                self.receive(receive, memory)
            }
            // The event queue carries only a transport reset, which this
            // device never sends (no migration).
            EVENT => Ok(false),
            _ => Err(DeviceError::Request(format!("no queue {index}"))),
        }
    }

    fn poll_backend(&mut self, queues: &mut [Queue], memory: &DeviceMemory) -> Result<bool, DeviceError> {
        match queues {
            [receive, _, _] => self.receive(receive, memory),
            _ => Ok(false),
        }
    }

    fn backend_fd(&self) -> Option<RawFd> {
        Some(self.epoll.as_raw_fd())
    }

    fn backend_wanted(&self) -> bool {
        !self.receive_starved
    }

    /// The driver reset the device: every connection is closed.
    fn reset(&mut self) {
        self.connections.clear();
        self.callers.clear();
        self.resets.clear();
        self.receive_starved = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_driver::{within_seconds, Driver, QUEUE_SIZE as DRIVER_QUEUE_SIZE};
    use std::path::PathBuf;
    use vm_memory::{Bytes, GuestAddress};

    const GUEST_CID: u64 = 3;

    /// A packet header's fields, as the tests write and read them.
    #[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
    struct Header {
        src_cid: u64,
        dst_cid: u64,
        src_port: u32,
        dst_port: u32,
        len: u32,
        kind: u16,
        op: u16,
        flags: u32,
        buf_alloc: u32,
        fwd_cnt: u32,
    }

    impl Header {
        /// From the guest's port 5000 to the host's `port`.
        fn to_host(port: u32, op: u16) -> Header {
            Header {
                src_cid: GUEST_CID,
                dst_cid: HOST_CID,
                src_port: 5000,
                dst_port: port,
                kind: TYPE_STREAM,
                op,
                buf_alloc: 64 << 10,
                ..Header::default()
            }
        }

        fn bytes(&self) -> Vec<u8> {
            let mut b = Vec::new();
            b.extend_from_slice(&self.src_cid.to_le_bytes());
            b.extend_from_slice(&self.dst_cid.to_le_bytes());
            b.extend_from_slice(&self.src_port.to_le_bytes());
            b.extend_from_slice(&self.dst_port.to_le_bytes());
            b.extend_from_slice(&self.len.to_le_bytes());
            b.extend_from_slice(&self.kind.to_le_bytes());
            b.extend_from_slice(&self.op.to_le_bytes());
            b.extend_from_slice(&self.flags.to_le_bytes());
            b.extend_from_slice(&self.buf_alloc.to_le_bytes());
            b.extend_from_slice(&self.fwd_cnt.to_le_bytes());
            b
        }

        fn parse(b: &[u8]) -> Header {
            let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
            let u16_at = |i: usize| u16::from_le_bytes(b[i..i + 2].try_into().unwrap());
            Header {
                src_cid: u64::from_le_bytes(b[0..8].try_into().unwrap()),
                dst_cid: u64::from_le_bytes(b[8..16].try_into().unwrap()),
                src_port: u32_at(16),
                dst_port: u32_at(20),
                len: u32_at(24),
                kind: u16_at(28),
                op: u16_at(30),
                flags: u32_at(32),
                buf_alloc: u32_at(36),
                fwd_cnt: u32_at(40),
            }
        }
    }

    /// A guest's vsock driver and the host's socket folder.
    struct Guest {
        driver: Driver,
        prefix: String,
        dir: PathBuf,
        received: u16,
        /// A receive buffer is offered and not used yet.
        offered: bool,
    }

    impl Drop for Guest {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn guest(name: &str) -> Guest {
        let dir = std::env::temp_dir().join(format!("hyp-vmm-vsock-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let prefix = dir.join("v.sock").to_str().unwrap().to_owned();
        let device = Vsock::new(GUEST_CID, &prefix).unwrap();
        Guest { driver: Driver::start(Box::new(device), false), prefix, dir, received: 0, offered: false }
    }

    impl Guest {
        fn listen(&self, port: u32) -> UnixListener {
            UnixListener::bind(format!("{}_{port}", self.prefix)).unwrap()
        }

        /// Sends one packet: the header, then `data` in a descriptor of its own.
        fn send(&mut self, header: Header, data: &[u8]) {
            let d = &mut self.driver;
            d.guest().write_slice(&header.bytes(), GuestAddress(d.buffer(0))).unwrap();
            d.guest().write_slice(data, GuestAddress(d.buffer(1))).unwrap();
            let mut parts = vec![(d.buffer(0), PKT_HEADER_SIZE as u32, false)];
            if !data.is_empty() {
                parts.push((d.buffer(1), data.len() as u32, false));
            }
            d.submit(TRANSMIT, &parts);
        }

        /// Offers one receive buffer (a header and 4 KiB) and takes what the
        /// device puts there, if anything.
        fn receive(&mut self) -> Option<(Header, Vec<u8>)> {
            let d = &mut self.driver;
            let (header_at, data_at) = (d.buffer(30), d.buffer(31));
            // One buffer at a time: a new one once the last was used.
            if !self.offered {
                d.guest().write_slice(&[0xee; PKT_HEADER_SIZE], GuestAddress(header_at)).unwrap();
                d.offer(RECEIVE, &[(header_at, PKT_HEADER_SIZE as u32, true), (data_at, 4096, true)]);
                self.offered = true;
            }
            d.notify(RECEIVE);
            let (count, length) = d.used(RECEIVE);
            if count == self.received {
                return None;
            }
            self.received = count;
            self.offered = false;
            let mut header = [0u8; PKT_HEADER_SIZE];
            d.guest().read_slice(&mut header, GuestAddress(header_at)).unwrap();
            let header = Header::parse(&header);
            assert_eq!(length as usize, PKT_HEADER_SIZE + header.len as usize, "the used length");
            let mut data = vec![0u8; header.len as usize];
            d.guest().read_slice(&mut data, GuestAddress(data_at)).unwrap();
            Some((header, data))
        }

        fn receive_op(&mut self) -> Option<u16> {
            self.receive().map(|(header, _)| header.op)
        }
    }

    /// The guest's receive ring says more than the queue's size is available
    /// while an RST is owed (its REQUEST found nobody listening): the device
    /// needs a reset (the vCPU had spun for ever, holding the device's lock).
    #[test]
    fn a_receive_index_beyond_the_queue_s_size_makes_the_device_need_a_reset() {
        let g = guest("bad-index");
        let (_, avail, _) = Driver::rings(RECEIVE);
        g.driver.guest().write_obj(DRIVER_QUEUE_SIZE + 1, GuestAddress(avail + 2)).unwrap();
        let mut g = within_seconds(10, move || {
            let mut g = g;
            g.send(Header::to_host(1234, OP_REQUEST), &[]);
            g
        });
        assert!(!g.driver.transport.live());
        assert!(!g.driver.transport.take_reports().is_empty());
    }

    #[test]
    fn a_connection_carries_data_both_ways_and_closes_cleanly() {
        let mut g = guest("flow");
        let listener = g.listen(1234);
        g.send(Header::to_host(1234, OP_REQUEST), &[]);
        let (mut host, _) = listener.accept().unwrap();
        let (response, _) = g.receive().unwrap();
        let expected = Header {
            src_cid: HOST_CID,
            dst_cid: GUEST_CID,
            src_port: 1234,
            dst_port: 5000,
            kind: TYPE_STREAM,
            op: OP_RESPONSE,
            buf_alloc: BUFFER,
            ..Header::default()
        };
        assert_eq!(response, expected);
        g.send(Header { len: 5, ..Header::to_host(1234, OP_RW) }, b"hello");
        let mut got = [0u8; 5];
        host.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        // The host answers; the backend's poll brings it to the guest.
        host.write_all(b"world!").unwrap();
        g.driver.transport.poll_backend(&g.driver.memory);
        let (data_header, data) = g.receive().unwrap();
        assert_eq!((data_header.op, data_header.len, data_header.fwd_cnt), (OP_RW, 6, 5));
        assert_eq!(&data, b"world!");
        // The guest sends no more: the host reads its end of file.
        g.send(Header { flags: SHUTDOWN_SEND, ..Header::to_host(1234, OP_SHUTDOWN) }, &[]);
        assert_eq!(host.read(&mut got).unwrap(), 0);
        // The host closes: the guest is told it sends no more.
        drop(host);
        g.driver.transport.poll_backend(&g.driver.memory);
        let (shutdown, _) = g.receive().unwrap();
        assert_eq!((shutdown.op, shutdown.flags), (OP_SHUTDOWN, SHUTDOWN_SEND));
        // The guest closes its side: the device resets the connection.
        g.send(Header { flags: SHUTDOWN_SEND | SHUTDOWN_RECEIVE, ..Header::to_host(1234, OP_SHUTDOWN) }, &[]);
        assert_eq!(g.receive_op(), Some(OP_RST));
        // The connection is gone: more data is answered with RST.
        g.send(Header { len: 1, ..Header::to_host(1234, OP_RW) }, b"x");
        assert_eq!(g.receive_op(), Some(OP_RST));
        assert_eq!(g.receive_op(), None, "nothing else is owed");
        assert!(g.driver.transport.live());
    }

    #[test]
    fn a_connection_to_a_port_without_a_socket_is_reset() {
        let mut g = guest("refused");
        g.send(Header::to_host(77, OP_REQUEST), &[]);
        let (reset, _) = g.receive().unwrap();
        assert_eq!((reset.op, reset.src_port, reset.dst_port, reset.dst_cid), (OP_RST, 77, 5000, GUEST_CID));
        assert_eq!(g.receive_op(), None);
        assert!(g.driver.transport.live());
    }

    #[test]
    fn bogus_packets_get_a_defined_answer() {
        let mut g = guest("bogus");
        let _listener = g.listen(9);
        // Another destination than the host, another type, an unknown op,
        // a packet for no connection: RST each. An RST is never answered.
        g.send(Header { dst_cid: 7, ..Header::to_host(9, OP_REQUEST) }, &[]);
        let (reset, _) = g.receive().unwrap();
        assert_eq!((reset.op, reset.src_cid), (OP_RST, 7), "from the CID the guest addressed");
        g.send(Header { kind: 2, ..Header::to_host(9, OP_REQUEST) }, &[]);
        assert_eq!(g.receive_op(), Some(OP_RST));
        g.send(Header::to_host(9, OP_CREDIT_UPDATE), &[]);
        assert_eq!(g.receive_op(), Some(OP_RST));
        g.send(Header::to_host(9, OP_RST), &[]);
        assert_eq!(g.receive_op(), None);
        // A source CID that is not the guest's: dropped, nobody to answer.
        g.send(Header { src_cid: 99, ..Header::to_host(9, OP_REQUEST) }, &[]);
        assert_eq!(g.receive_op(), None);
        // An unknown op on a live connection resets it.
        g.send(Header::to_host(9, OP_REQUEST), &[]);
        assert_eq!(g.receive_op(), Some(OP_RESPONSE));
        g.send(Header::to_host(9, 42), &[]);
        assert_eq!(g.receive_op(), Some(OP_RST));
        // A second REQUEST for a live connection resets it too.
        g.send(Header::to_host(9, OP_REQUEST), &[]);
        assert_eq!(g.receive_op(), Some(OP_RESPONSE));
        g.send(Header::to_host(9, OP_REQUEST), &[]);
        assert_eq!(g.receive_op(), Some(OP_RST));
        assert!(g.driver.transport.live());
        // A length past the most a packet carries: the device needs a reset.
        g.send(Header { len: MAX_PACKET_DATA + 1, ..Header::to_host(9, OP_RW) }, &[0; 16]);
        assert!(!g.driver.transport.live());
        let reports = g.driver.transport.take_reports();
        assert!(reports[0].contains("Invalid header `len`"), "{reports:?}");
    }

    #[test]
    fn a_guest_sending_past_its_credit_is_reset_and_the_buffer_stays_bounded() {
        let mut g = guest("credit");
        let listener = g.listen(5);
        g.send(Header::to_host(5, OP_REQUEST), &[]);
        // The host accepts but never reads: the socket fills, then the buffer.
        let (_host, _) = listener.accept().unwrap();
        assert_eq!(g.receive_op(), Some(OP_RESPONSE));
        let chunk = vec![0x5a; MAX_PACKET_DATA as usize];
        let mut sent = 0u64;
        let answer = loop {
            g.send(Header { len: MAX_PACKET_DATA, ..Header::to_host(5, OP_RW) }, &chunk);
            sent += u64::from(MAX_PACKET_DATA);
            if let Some(op) = g.receive_op() {
                if op != OP_CREDIT_UPDATE {
                    break op;
                }
            }
            assert!(sent < 64 << 20, "no reset after {sent} bytes");
        };
        assert_eq!(answer, OP_RST);
        // The socket took what its buffer holds (a few hundred KiB), the
        // device at most BUFFER more.
        assert!(sent > u64::from(BUFFER), "{sent}");
        assert!(g.driver.transport.live());
    }

    #[test]
    fn connections_beyond_the_most_are_refused() {
        let mut g = guest("many");
        let _listener = g.listen(8);
        for port in 0..MAX_CONNECTIONS as u32 + 1 {
            g.send(Header { src_port: 6000 + port, ..Header::to_host(8, OP_REQUEST) }, &[]);
            let expected = if (port as usize) < MAX_CONNECTIONS { OP_RESPONSE } else { OP_RST };
            assert_eq!(g.receive_op(), Some(expected), "connection {port}");
        }
    }

    #[test]
    fn a_host_program_connects_to_a_guest_port() {
        let mut g = guest("called");
        let mut host = UnixStream::connect(&g.prefix).unwrap();
        host.write_all(b"CONNECT 52\n").unwrap();
        g.driver.transport.poll_backend(&g.driver.memory);
        let (request, _) = g.receive().unwrap();
        let from_host = (OP_REQUEST, HOST_CID, FIRST_HOST_PORT, GUEST_CID, 52, BUFFER);
        assert_eq!(
            (request.op, request.src_cid, request.src_port, request.dst_cid, request.dst_port, request.buf_alloc),
            from_host
        );
        // The guest accepts: the program reads OK and its host port.
        let to_port = |op| Header { src_port: 52, ..Header::to_host(FIRST_HOST_PORT, op) };
        g.send(to_port(OP_RESPONSE), &[]);
        let mut line = [0u8; 14];
        host.read_exact(&mut line).unwrap();
        assert_eq!(&line, b"OK 1073741824\n");
        host.write_all(b"ping").unwrap();
        g.driver.transport.poll_backend(&g.driver.memory);
        let (data_header, data) = g.receive().unwrap();
        assert_eq!((data_header.op, &data[..]), (OP_RW, &b"ping"[..]));
        g.send(Header { len: 4, ..to_port(OP_RW) }, b"pong");
        let mut got = [0u8; 4];
        host.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");
        // A guest that refuses (RST): the program reads the end, no OK.
        let mut refused = UnixStream::connect(&g.prefix).unwrap();
        refused.write_all(b"CONNECT 53\n").unwrap();
        g.driver.transport.poll_backend(&g.driver.memory);
        let (request, _) = g.receive().unwrap();
        assert_eq!((request.op, request.src_port), (OP_REQUEST, FIRST_HOST_PORT + 1));
        g.send(Header { src_port: 53, ..Header::to_host(FIRST_HOST_PORT + 1, OP_RST) }, &[]);
        assert_eq!(refused.read(&mut got).unwrap(), 0);
        // Anything but a CONNECT line is closed, and the guest hears nothing.
        let mut bad = UnixStream::connect(&g.prefix).unwrap();
        bad.write_all(b"HELLO 52\n").unwrap();
        g.driver.transport.poll_backend(&g.driver.memory);
        assert_eq!(bad.read(&mut got).unwrap(), 0);
        assert_eq!(g.receive_op(), None);
        // Data from a guest before its RESPONSE resets the connection.
        let mut early = UnixStream::connect(&g.prefix).unwrap();
        early.write_all(b"CONNECT 54\n").unwrap();
        g.driver.transport.poll_backend(&g.driver.memory);
        assert_eq!(g.receive_op(), Some(OP_REQUEST));
        g.send(Header { src_port: 54, len: 1, ..Header::to_host(FIRST_HOST_PORT + 2, OP_RW) }, b"x");
        assert_eq!(g.receive_op(), Some(OP_RST));
        assert_eq!(early.read(&mut got).unwrap(), 0);
        assert!(g.driver.transport.live());
    }

    #[test]
    fn busy_connections_take_turns() {
        let mut g = guest("turns");
        let listener = g.listen(4);
        let mut hosts = Vec::new();
        for guest_port in [1, 2] {
            g.send(Header { src_port: guest_port, ..Header::to_host(4, OP_REQUEST) }, &[]);
            hosts.push(listener.accept().unwrap().0);
            assert_eq!(g.receive_op(), Some(OP_RESPONSE));
        }
        for (host, byte) in hosts.iter_mut().zip([1u8, 2]) {
            host.write_all(&[byte; 10_000]).unwrap();
        }
        g.driver.transport.poll_backend(&g.driver.memory);
        let ports: Vec<(u32, u8)> = (0..4)
            .map(|_| {
                let (header, data) = g.receive().unwrap();
                assert_eq!((header.op, header.len), (OP_RW, 4096));
                (header.dst_port, data[0])
            })
            .collect();
        assert_eq!(ports, [(1, 1), (2, 2), (1, 1), (2, 2)]);
    }

    #[test]
    fn data_waits_for_the_guest_s_credit() {
        let mut g = guest("peer-credit");
        let listener = g.listen(3);
        // The guest has room for 10 bytes only.
        g.send(Header { buf_alloc: 10, ..Header::to_host(3, OP_REQUEST) }, &[]);
        let (mut host, _) = listener.accept().unwrap();
        assert_eq!(g.receive_op(), Some(OP_RESPONSE));
        host.write_all(b"0123456789abcdef").unwrap();
        g.driver.transport.poll_backend(&g.driver.memory);
        let (header, data) = g.receive().unwrap();
        assert_eq!((header.op, &data[..]), (OP_RW, &b"0123456789"[..]));
        // Out of credit: the device asks for an update, sends nothing more.
        assert_eq!(g.receive_op(), Some(OP_CREDIT_REQUEST));
        g.driver.transport.poll_backend(&g.driver.memory);
        assert_eq!(g.receive_op(), None);
        // The guest consumed the 10 bytes: the rest comes.
        g.send(Header { buf_alloc: 10, fwd_cnt: 10, ..Header::to_host(3, OP_CREDIT_UPDATE) }, &[]);
        g.driver.transport.poll_backend(&g.driver.memory);
        let (_, data) = g.receive().unwrap();
        assert_eq!(&data, b"abcdef");
    }
}
