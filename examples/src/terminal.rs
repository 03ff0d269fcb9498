//! The caller's terminal: prompts for `login`. Attaching it to a container is the
//! library's ([`oci_rs_runtime::attach_stdio`] and the items beside it).

use anyhow::Result;
use std::io::Write;

/// Asks `label` on the terminal and reads one line from standard input, without echo when
/// `echo` is false (a password); `None` when standard input is not a terminal. The echo
/// comes back however the read ends.
pub fn prompt(label: &str, echo: bool) -> Result<Option<String>> {
    let stdin = std::io::stdin();
    if !rustix::termios::isatty(&stdin) {
        return Ok(None);
    }
    let mut out = std::io::stdout();
    let saved = rustix::termios::tcgetattr(&stdin)?;
    // Echo off before the prompt shows, so nothing typed ahead of it is echoed either.
    if !echo {
        let mut quiet = saved.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet)?;
    }
    write!(out, "{label}")?;
    out.flush()?;
    let mut line = String::new();
    let read = std::io::BufRead::read_line(&mut stdin.lock(), &mut line);
    if !echo {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &saved);
        writeln!(out)?;
    }
    read?;
    Ok(Some(line.trim_end_matches(['\n', '\r']).to_owned()))
}
