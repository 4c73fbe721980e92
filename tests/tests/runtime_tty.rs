//! Terminals through a console socket (how containerd and podman ask for a pty): the runtime
//! opens the pty inside the container and sends the master fd over the socket with SCM_RIGHTS.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
use pea_tests::fixtures::BundleBuilder;
use pea_tests::privileged::require_root;
use pea_tests::runtime_cli::{assert_no_leftovers, unique_id, unique_sleep, Runtime};

/// Accepts one connection on `listener` and receives the pty master it carries.
fn receive_master(listener: &UnixListener) -> std::fs::File {
    listener.set_nonblocking(false).unwrap();
    let (conn, _) = listener
        .accept()
        .expect("runtime connects to the console socket");
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<UnixAddr>(
        std::os::fd::AsRawFd::as_raw_fd(&conn),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .expect("recvmsg");
    for c in msg.cmsgs().expect("cmsgs") {
        if let ControlMessageOwned::ScmRights(fds) = c {
            let fd = fds[0];
            let owned: OwnedFd = own_received_fd(fd);
            return std::fs::File::from(owned);
        }
    }
    panic!("no fd received over the console socket");
}

/// Takes ownership of a just-received fd without `unsafe` (forbidden in this crate): dup2 it
/// over the fd of a File we own, then close the raw number.
fn own_received_fd(fd: std::os::fd::RawFd) -> OwnedFd {
    let holder = std::fs::File::open("/dev/null").expect("open /dev/null");
    nix::unistd::dup2(fd, std::os::fd::AsRawFd::as_raw_fd(&holder)).expect("dup2");
    nix::unistd::close(fd).expect("close");
    OwnedFd::from(holder)
}

/// Reads from the pty until `needle` shows up (bounded).
fn read_until(master: &mut std::fs::File, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut all = String::new();
    let fd = std::os::fd::AsRawFd::as_raw_fd(master);
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    while Instant::now() < deadline {
        let mut buf = [0u8; 1024];
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                all.push_str(&String::from_utf8_lossy(&buf[..n]));
                if all.contains(needle) {
                    return all;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(_) => break,
        }
    }
    panic!("{needle:?} not seen on the pty; got {all:?}");
}

#[test]
fn exec_tty_and_create_tty_through_a_console_socket() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let marker = unique_sleep();
    let mut bun = BundleBuilder::busybox(&tmp.path().join("b"))
        .args([
            "sh",
            "-c",
            &format!("echo init-tty=$(tty); exec sleep {marker}"),
        ])
        .build()
        .unwrap();
    let mut p = bun.spec.process().clone().unwrap();
    p.set_terminal(Some(true));
    bun.spec.set_process(Some(p));
    bun.save().unwrap();
    let sock = tmp.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let id = unique_id("tty");

    // create with a terminal: without a console socket it is refused
    rt.run(["create", "--bundle", bun.dir.to_str().unwrap(), &id])
        .fails_with("--console-socket is required");
    assert_no_leftovers(&rt, &id, None);

    let listener2 = listener.try_clone().unwrap();
    let t = std::thread::spawn(move || receive_master(&listener2));
    rt.run([
        "create",
        "--bundle",
        bun.dir.to_str().unwrap(),
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
    ])
    .ok();
    let mut init_master = t.join().unwrap();
    rt.run(["start", &id]).ok();
    let out = read_until(&mut init_master, "init-tty=/dev/");
    assert!(
        out.contains("init-tty=/dev/pts/") || out.contains("init-tty=/dev/console"),
        "{out}"
    );

    // exec -t -d with a console socket: an interactive shell on a new pty
    let listener3 = listener.try_clone().unwrap();
    let t = std::thread::spawn(move || receive_master(&listener3));
    rt.run([
        "exec",
        "--tty",
        "--detach",
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
        "sh",
    ])
    .ok();
    let mut master = t.join().unwrap();
    master.write_all(b"echo exec-$((6*7)); tty\n").unwrap();
    // "exec-42" only appears as output (the echoed input has the unexpanded $((6*7))).
    let mut out = read_until(&mut master, "exec-42");
    if !out.contains("\n/dev/pts/") {
        out += &read_until(&mut master, "/dev/pts/");
    }
    assert!(out.contains("/dev/pts/"), "{out}");
    master.write_all(b"exit\n").unwrap();

    // exec --tty in the foreground without a console socket: pea relays the pty itself.
    let o = rt.run_stdin(
        ["exec", "--tty", &id, "sh"],
        b"tty; echo fg-$((40+2)); exit 6\n",
    );
    assert_eq!(o.code, Some(6), "{}", o.stderr);
    assert!(
        o.stdout.contains("fg-42") && o.stdout.contains("/dev/pts/"),
        "{}",
        o.stdout
    );
    rt.run(["exec", "--tty", "--detach", &id, "true"])
        .fails_with("needs --console-socket");

    rt.run(["delete", "--force", &id]).ok();
    assert_no_leftovers(&rt, &id, Some(&marker));
}

#[test]
fn foreground_run_with_a_terminal_relays_the_pty() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let mut bun = BundleBuilder::busybox(tmp.path())
        .args(["sh"])
        .build()
        .unwrap();
    let mut p = bun.spec.process().clone().unwrap();
    p.set_terminal(Some(true));
    bun.spec.set_process(Some(p));
    bun.save().unwrap();
    let id = unique_id("fgtty");
    let o = rt.run_stdin(
        ["run", "--bundle", bun.dir.to_str().unwrap(), &id],
        b"tty; echo run-$((3*3)); exit 5\n",
    );
    assert_eq!(o.code, Some(5), "{}", o.stderr);
    assert!(o.stdout.contains("run-9"), "{}", o.stdout);
    assert!(o.stdout.contains("/dev/pts/0"), "{}", o.stdout);
    assert_no_leftovers(&rt, &id, None);
}
