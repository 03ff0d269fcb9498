//! `oci`: a docker-like command line over the oci-rs crates.
//!
//! Images live in an OCI layout under the data directory (`--data-dir`, else
//! `$XDG_DATA_HOME/oci-rs`, `/var/lib/oci-rs` as root, `~/.local/share/oci-rs`).
//!
//! ```text
//! oci import rootfs.tar localhost:5000/busybox:1 -c 'CMD ["sh"]'
//! oci push localhost:5000/busybox:1
//! oci pull --platform linux/arm64 localhost:5000/busybox:1
//! oci images
//! oci inspect busybox
//! oci save -o busybox.tar busybox && oci load -i busybox.tar
//! ```

mod args;
mod containers;
mod images;
mod registry;
mod run;
mod system;

use anyhow::Result;
use args::*;
use oci_examples::images::{data_dir, Images};
use oci_examples::EXIT_TOOL_FAILURE;
use std::io::Write;
use std::path::Path;

/// `-` means standard input or output, as for docker.
fn dash(p: Option<&Path>) -> Option<&Path> {
    p.filter(|p| p.as_os_str() != "-")
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    // As an io::Error, so that a reader that went away (`| head`) ends it quietly.
    serde_json::to_writer_pretty(&mut out, v).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// `inspect`'s output: the documents as a JSON array, or each through `--format`.
fn print_docs<T: serde::Serialize>(
    docs: &[T],
    format: Option<&str>,
    out: &mut impl Write,
) -> Result<()> {
    match format {
        Some(f) => {
            let f = oci_rs_runtime::format::Format::parse(f, "")?;
            for d in docs {
                writeln!(out, "{}", f.render(&serde_json::to_value(d)?)?)?;
            }
        }
        None => {
            serde_json::to_writer_pretty(&mut *out, docs).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    if let Verb::Version { format } = &cli.verb {
        return system::print_version(format.as_deref(), &mut std::io::stdout().lock());
    }
    if let Verb::Registry { verb } = cli.verb {
        return registry::registry_verb(verb).await;
    }
    let mut dir = data_dir(cli.data_dir.as_deref());
    // A verb that only reads never creates the store: with no store yet it reads an empty
    // one, made aside and gone when the verb ends.
    let read_only = matches!(
        cli.verb,
        Verb::Images { .. }
            | Verb::Inspect { .. }
            | Verb::History { .. }
            | Verb::Ps { .. }
            | Verb::Logs { .. }
            | Verb::Events { .. }
            | Verb::Port { .. }
            | Verb::Info { .. }
            | Verb::Manifest {
                verb: ManifestVerb::Inspect { .. }
            }
    );
    let _empty = if read_only && !dir.exists() {
        let t = tempfile::tempdir()?;
        dir = t.path().join("data");
        Some(t)
    } else {
        None
    };
    let insecure = cli.insecure.clone();
    let images = Images::open(&dir, cli.insecure, cli.quiet).await?;
    let out = std::io::stdout().lock();
    match cli.verb {
        Verb::System {
            verb:
                SystemVerb::Service {
                    time,
                    uri,
                    tlscert,
                    tlskey,
                    tlsverify: _,
                    tlscacert,
                },
        } => {
            let tls = match (tlscert, tlskey) {
                (Some(cert), Some(key)) => Some(oci_rs_runtime::api::ApiTls::from_files(
                    &cert,
                    &key,
                    tlscacert.as_deref(),
                )?),
                _ => None,
            };
            system::serve_api(images, &dir, time, uri.as_deref(), tls.as_ref()).await
        }
        v @ (Verb::Version { .. }
        | Verb::Info { .. }
        | Verb::System {
            verb: SystemVerb::Df { .. } | SystemVerb::Prune { .. },
        }) => system::system_verb(&images, &insecure, &dir, v, out).await,
        Verb::Run(args) => {
            drop(out);
            let code = run::run_container(&images, &dir, *args, true).await?;
            std::process::exit(code);
        }
        Verb::Create(args) => {
            drop(out);
            run::run_container(&images, &dir, *args, false).await?;
            Ok(())
        }
        v @ (Verb::Ps { .. }
        | Verb::Logs { .. }
        | Verb::Events { .. }
        | Verb::Stop { .. }
        | Verb::Restart { .. }
        | Verb::Kill { .. }
        | Verb::Start { .. }
        | Verb::Wait { .. }
        | Verb::Attach { .. }
        | Verb::Exec { .. }
        | Verb::Volume { .. }
        | Verb::Network { .. }
        | Verb::Port { .. }
        | Verb::Container { .. }
        | Verb::Top { .. }
        | Verb::Stats { .. }
        | Verb::Rename { .. }
        | Verb::Pause { .. }
        | Verb::Unpause { .. }
        | Verb::Update { .. }
        | Verb::Diff { .. }
        | Verb::Rm { .. }) => {
            drop(out);
            let code = containers::container_verb(&dir, v).await?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        v => images::image_verb(&images, &dir, insecure, v, out).await,
    }
}

fn main() {
    // A container's monitor is this program again (see oci_rs_runtime::monitor).
    oci_rs_runtime::serve_if_requested();
    // Usage errors as docker gives them: one line and exit 125 (help and version as clap's).
    let cli = match parse(docker_spellings(std::env::args_os().collect())) {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp
                    | clap::error::ErrorKind::DisplayVersion
                    | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("oci: {first} (see 'oci --help')");
            std::process::exit(EXIT_TOOL_FAILURE);
        }
    };
    // Only `run` starts containers; before any thread, so that they cannot reach this
    // program's file (CVE-2019-5736).
    if matches!(
        cli.verb,
        Verb::Run { .. }
            | Verb::Start { .. }
            | Verb::Restart { .. }
            | Verb::Exec { .. }
            | Verb::System { .. }
            | Verb::Build { .. }
    ) {
        if let Err(e) = oci_rs_runtime::reexec_sealed() {
            eprintln!("oci: {e}");
            std::process::exit(EXIT_TOOL_FAILURE);
        }
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oci: cannot start the runtime: {e}");
            std::process::exit(EXIT_TOOL_FAILURE);
        }
    };
    // docker's exit codes: 125 when `run` fails before the container's command runs (the
    // command's own 126/127 and status come from the container), 1 for every other verb.
    let failure = if matches!(cli.verb, Verb::Run { .. } | Verb::Create { .. }) {
        EXIT_TOOL_FAILURE
    } else {
        1
    };
    let is_exec = matches!(cli.verb, Verb::Exec { .. });
    if let Err(e) = rt.block_on(run(cli)) {
        // A reader that went away (`oci logs x | head`) is not a failure.
        let broken_pipe = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        });
        if broken_pipe {
            std::process::exit(0);
        }
        // Messages name images, tags, files and Dockerfile text: line breaks are kept (a
        // failed step's output spans lines), every other control character is escaped.
        let msg = format!("{e:#}");
        let msg: Vec<_> = msg.split('\n').map(oci_rs_image::printable).collect();
        eprintln!("oci: {}", msg.join("\n"));
        let exec_status = e
            .chain()
            .find_map(|c| {
                c.downcast_ref::<oci_rs_runtime::EngineError>()?
                    .exec_status()
            })
            .filter(|_| is_exec);
        std::process::exit(exec_status.unwrap_or(failure));
    }
}

/// The command line, where a flag given twice takes its last value (docker's, whose flag
/// parser overwrites) instead of being refused; flags that collect (`-e`, `-v`) collect.
fn parse(args: Vec<std::ffi::OsString>) -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    fn overriding(c: clap::Command) -> clap::Command {
        c.args_override_self(true).mut_subcommands(overriding)
    }
    let matches = overriding(Cli::command()).try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

/// docker's management-command spellings (`container ls`, `image rm`, ...) as the verbs they
/// name, so scripts written for docker run unchanged. `container prune` is a verb of its own.
fn docker_spellings(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    // Skip the global options to find the verb.
    let mut i = 1;
    while let Some(a) = args.get(i).and_then(|a| a.to_str()) {
        match a {
            "-q" | "--quiet" => i += 1,
            "--data-dir" | "--insecure-registry" => i += 2,
            a if a.starts_with("--data-dir=") || a.starts_with("--insecure-registry=") => i += 1,
            _ => break,
        }
    }
    let (Some(group), Some(verb)) = (
        args.get(i).and_then(|a| a.to_str()),
        args.get(i + 1).and_then(|a| a.to_str()),
    ) else {
        return args;
    };
    let mapped: &[&str] = match (group, verb) {
        ("container", "ls" | "list" | "ps") => &["ps"],
        ("container", "remove") => &["rm"],
        // Of that kind only: an image named as a container is not found, and the reverse.
        ("container", "inspect") => &["inspect", "--type", "container"],
        ("image", "inspect") => &["inspect", "--type", "image"],
        (
            "container",
            v @ ("rm" | "start" | "stop" | "restart" | "kill" | "wait" | "logs" | "exec" | "attach"
            | "top" | "run" | "create" | "commit" | "export" | "cp" | "diff" | "pause"
            | "unpause" | "port" | "rename" | "stats" | "update"),
        ) => &[v],
        ("image", "ls" | "list") => &["images"],
        ("image", "rm" | "remove" | "rmi") => &["rmi"],
        (
            "image",
            v @ ("pull" | "push" | "tag" | "save" | "load" | "import" | "history" | "build"),
        ) => &[v],
        ("system", v @ ("info" | "events")) => &[v],
        // podman's spellings of the volume and network verbs.
        (g @ ("volume" | "network"), "list") => &[g, "ls"],
        (g @ ("volume" | "network"), "remove") => &[g, "rm"],
        _ => return args,
    };
    let mapped: Vec<std::ffi::OsString> = mapped.iter().map(Into::into).collect();
    args.splice(i..i + 2, mapped);
    args
}

#[cfg(test)]
mod tests {
    use super::docker_spellings;

    fn map(args: &[&str]) -> Vec<String> {
        docker_spellings(args.iter().map(Into::into).collect())
            .into_iter()
            .map(|a| a.into_string().unwrap_or_default())
            .collect()
    }

    #[test]
    fn management_commands_name_the_verbs() {
        assert_eq!(map(&["oci", "container", "ls", "-a"]), ["oci", "ps", "-a"]);
        assert_eq!(
            map(&["oci", "-q", "--data-dir", "/d", "image", "rm", "x"]),
            ["oci", "-q", "--data-dir", "/d", "rmi", "x"]
        );
        assert_eq!(map(&["oci", "image", "ls"]), ["oci", "images"]);
        assert_eq!(
            map(&["oci", "container", "prune"]),
            ["oci", "container", "prune"]
        );
        assert_eq!(map(&["oci", "ps", "container"]), ["oci", "ps", "container"]);
        assert_eq!(
            map(&["oci", "container", "exec", "c", "ls"]),
            ["oci", "exec", "c", "ls"]
        );
        assert_eq!(
            map(&["oci", "image", "inspect", "x"]),
            ["oci", "inspect", "--type", "image", "x"]
        );
        assert_eq!(map(&["oci", "system", "info"]), ["oci", "info"]);
        assert_eq!(map(&["oci", "volume", "list"]), ["oci", "volume", "ls"]);
        assert_eq!(
            map(&["oci", "network", "remove", "n"]),
            ["oci", "network", "rm", "n"]
        );
        assert_eq!(map(&["oci", "image", "remove", "i"]), ["oci", "rmi", "i"]);
    }
}
