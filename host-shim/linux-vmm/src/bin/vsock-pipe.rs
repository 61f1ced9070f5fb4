//! `vsock-pipe`: moves a byte stream over vsock, for the virtio-vsock test
//! (scripts/linux-host-init, scripts/virtio-guest-init).
//!   vsock-pipe connect CID PORT   (the guest) connects an AF_VSOCK stream
//!       socket to CID:PORT, sends its stdin, shuts its sending side, and
//!       waits for the peer to close (so every byte was taken).
//!   vsock-pipe listen-unix PATH   (the host) listens on the unix socket
//!       PATH (hyp-vmm's vsock device connects the guest there), accepts one
//!       connection and copies it to stdout until its end.
//!   vsock-pipe listen PORT   (the guest) listens on vsock port PORT,
//!       accepts one connection and copies it to stdout until its end.
//!   vsock-pipe connect-unix PATH PORT   (the host) connects to hyp-vmm's
//!       vsock listener PATH, asks for the guest's PORT (`CONNECT PORT`),
//!       waits for `OK`, then sends its stdin, shuts its sending side, and
//!       waits for the guest to close.
//! Each says on stderr how many bytes it moved; exits 0 only if all went.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::ExitCode;

/// Linux's AF_VSOCK (libc lacks it for musl).
const AF_VSOCK: i32 = 40;

/// Any CID: a listener's own address.
const VMADDR_CID_ANY: u32 = u32::MAX;

/// `struct sockaddr_vm`.
#[repr(C)]
struct VsockAddress {
    family: u16,
    reserved: u16,
    port: u32,
    cid: u32,
    zero: [u8; 4],
}

fn connect_vsock(cid: u32, port: u32) -> std::io::Result<UnixStream> {
    // SAFETY: socket(2) with constant arguments; the fd is owned at once.
    let fd = unsafe { libc::socket(AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let address = VsockAddress { family: AF_VSOCK as u16, reserved: 0, port, cid, zero: [0; 4] };
    let length = core::mem::size_of::<VsockAddress>() as libc::socklen_t;
    // SAFETY: `address` is a valid sockaddr_vm of `length` bytes.
    if unsafe { libc::connect(fd, (&raw const address).cast(), length) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // A stream socket's read, write and shutdown are those of any socket:
    // UnixStream's methods are the plain system calls.
    Ok(UnixStream::from(socket))
}

/// Sends stdin, shuts the sending side, and waits for the peer to close.
fn send_all(socket: &mut UnixStream) -> Result<u64, String> {
    let sent = std::io::copy(&mut std::io::stdin().lock(), socket).map_err(|e| format!("sending: {e}"))?;
    socket.shutdown(std::net::Shutdown::Write).map_err(|e| format!("shutdown: {e}"))?;
    let mut rest = Vec::new();
    socket.read_to_end(&mut rest).map_err(|e| format!("waiting for the peer to close: {e}"))?;
    Ok(sent)
}

/// Copies one accepted connection to stdout; how many bytes.
fn receive_all(connection: &mut UnixStream) -> Result<u64, String> {
    let mut out = std::io::stdout().lock();
    let received = std::io::copy(connection, &mut out).map_err(|e| format!("receiving: {e}"))?;
    out.flush().map_err(|e| format!("stdout: {e}"))?;
    Ok(received)
}

fn parse_port(port: &str) -> Result<u32, String> {
    port.parse().map_err(|_| format!("the port '{port}' is not a number"))
}

fn listen_vsock(port: &str) -> Result<String, String> {
    let port = parse_port(port)?;
    // SAFETY: socket(2) with constant arguments; the fd is owned at once.
    let fd = unsafe { libc::socket(AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("a vsock socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a new socket nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let address = VsockAddress { family: AF_VSOCK as u16, reserved: 0, port, cid: VMADDR_CID_ANY, zero: [0; 4] };
    let length = core::mem::size_of::<VsockAddress>() as libc::socklen_t;
    // SAFETY: `address` is a valid sockaddr_vm of `length` bytes; listen
    // and accept take the fd alone.
    let accepted = unsafe {
        if libc::bind(fd, (&raw const address).cast(), length) < 0 || libc::listen(fd, 1) < 0 {
            -1
        } else {
            libc::accept4(fd, core::ptr::null_mut(), core::ptr::null_mut(), libc::SOCK_CLOEXEC)
        }
    };
    if accepted < 0 {
        return Err(format!("listen on vsock port {port}: {}", std::io::Error::last_os_error()));
    }
    drop(socket);
    // SAFETY: `accepted` is a new socket nobody else owns.
    let mut connection = UnixStream::from(unsafe { OwnedFd::from_raw_fd(accepted) });
    let received = receive_all(&mut connection)?;
    Ok(format!("received {received} bytes on vsock port {port}"))
}

fn connect_unix(path: &str, port: &str) -> Result<String, String> {
    let port = parse_port(port)?;
    let mut socket = UnixStream::connect(path).map_err(|e| format!("connect to {path}: {e}"))?;
    socket.write_all(format!("CONNECT {port}\n").as_bytes()).map_err(|e| format!("CONNECT: {e}"))?;
    // The answer, a byte at a time: what follows it is the guest's data.
    let mut answer = Vec::new();
    let mut byte = [0u8];
    while answer.len() < 32 {
        match socket.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) => answer.push(byte[0]),
            Ok(_) => return Err(format!("the guest refused port {port} (the connection ended)")),
            Err(e) => return Err(format!("waiting for OK: {e}")),
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    if !answer.starts_with("OK ") {
        return Err(format!("the answer to CONNECT {port} was '{answer}', not OK"));
    }
    let sent = send_all(&mut socket)?;
    Ok(format!("sent {sent} bytes to the guest's port {port} ({answer}), the guest closed"))
}

fn connect(cid: &str, port: &str) -> Result<String, String> {
    let cid: u32 = cid.parse().map_err(|_| format!("the CID '{cid}' is not a number"))?;
    let port = parse_port(port)?;
    let mut socket = connect_vsock(cid, port).map_err(|e| format!("connect to {cid}:{port}: {e}"))?;
    let sent = send_all(&mut socket)?;
    Ok(format!("sent {sent} bytes to {cid}:{port}, the peer closed"))
}

fn listen_unix(path: &str) -> Result<String, String> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(|e| format!("listen on {path}: {e}"))?;
    let (mut connection, _) = listener.accept().map_err(|e| format!("accept on {path}: {e}"))?;
    let received = receive_all(&mut connection)?;
    Ok(format!("received {received} bytes on {path}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["connect", cid, port] => connect(cid, port),
        ["listen-unix", path] => listen_unix(path),
        ["listen", port] => listen_vsock(port),
        ["connect-unix", path, port] => connect_unix(path, port),
        _ => Err("usage: vsock-pipe connect CID PORT | listen-unix PATH | listen PORT | connect-unix PATH PORT".into()),
    };
    match result {
        Ok(message) => {
            eprintln!("vsock-pipe: {message}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("vsock-pipe: {message}");
            ExitCode::FAILURE
        }
    }
}
