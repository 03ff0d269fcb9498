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

use anyhow::Result;
use clap::{Parser, Subcommand};
use oci_examples::images::{data_dir, short, Images};
use oci_examples::EXIT_TOOL_FAILURE;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "oci",
    version,
    about = "A docker-like tool over the oci-rs crates"
)]
struct Cli {
    /// Where images (and containers) are kept.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Registries reached over plain HTTP (loopback registries always are).
    #[arg(long = "insecure-registry", global = true)]
    insecure: Vec<String>,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Pull an image from a registry.
    Pull {
        /// The image (`busybox`, `localhost:5000/app:1`, `name@sha256:...`).
        image: String,
        /// `os/arch[/variant]`, or `all` for every platform of an index.
        #[arg(long)]
        platform: Option<String>,
    },
    /// Push an image to its registry.
    Push {
        /// The image.
        image: String,
    },
    /// Give an image another name.
    Tag {
        /// The image.
        source: String,
        /// The new name.
        target: String,
    },
    /// List images.
    Images {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove images (untag, then delete what nothing else uses).
    Rmi {
        /// Untag an image even when a container uses it (its content stays for the container).
        #[arg(short, long)]
        force: bool,
        /// The images.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show an image like `docker image inspect`.
    Inspect {
        /// The images.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Manifest commands.
    Manifest {
        #[command(subcommand)]
        verb: ManifestVerb,
    },
    /// Write images to a docker-archive (what `docker load` reads).
    Save {
        /// The archive file (`-` or none: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// The images.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Read images from a docker-archive or oci-archive.
    Load {
        /// The archive file (`-` or none: standard input).
        #[arg(short, long)]
        input: Option<PathBuf>,
    },
    /// Run a command in a new container from an image (pulled when missing).
    Run {
        /// Remove the container's filesystem when it exits.
        #[arg(long)]
        rm: bool,
        /// Set an environment variable (`KEY=VALUE`).
        #[arg(short, long = "env")]
        env: Vec<String>,
        /// Working directory.
        #[arg(short, long)]
        workdir: Option<String>,
        /// User (`uid`, `uid:gid`, `name`, `name:group`).
        #[arg(short, long)]
        user: Option<String>,
        /// Container name.
        #[arg(long)]
        name: Option<String>,
        /// none or host.
        #[arg(long, default_value = "none")]
        network: String,
        /// Replace the image's entrypoint.
        #[arg(long)]
        entrypoint: Option<String>,
        /// `os/arch[/variant]`.
        #[arg(long)]
        platform: Option<String>,
        /// The image.
        image: String,
        /// The command and its arguments (default: the image's Cmd).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List containers kept after their run (without --rm).
    Ps {
        /// All containers (they are all stopped once `run` returns).
        #[arg(short, long)]
        all: bool,
    },
    /// Remove containers.
    Rm {
        /// Kill a created or running container first.
        #[arg(short, long)]
        force: bool,
        /// The containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Make a new image from a container's changes.
    Commit {
        /// The container.
        container: String,
        /// The new image's name.
        image: String,
    },
    /// Write a container's filesystem as a tar.
    Export {
        /// The tar file (`-` or none: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// The container.
        container: String,
    },
    /// Check credentials against a registry and store them in docker's config.json.
    Login {
        /// The registry (`docker.io`, `localhost:5000`).
        registry: String,
        /// User name.
        #[arg(short, long)]
        username: String,
        /// Password (prefer --password-stdin).
        #[arg(short, long)]
        password: Option<String>,
        /// Read the password from stdin.
        #[arg(long = "password-stdin")]
        password_stdin: bool,
    },
    /// Apply an image's layers into DIR/rootfs, DIR private to you (0700).
    Unpack {
        /// The image.
        image: String,
        /// The directory (created when missing).
        dir: PathBuf,
        /// Apply straight into DIR with the image's modes: any local user may then reach the
        /// image's setuid binaries and device nodes.
        #[arg(long)]
        public: bool,
    },
    /// Layer files by hand.
    Layer {
        #[command(subcommand)]
        verb: LayerVerb,
    },
    /// Make a one-layer image from a filesystem tar (plain, gzip or zstd).
    Import {
        /// The tar file, an http(s) URL, or `-` for standard input.
        file: String,
        /// The image name to give it.
        image: String,
        /// Dockerfile-style changes: `CMD ["sh"]`, `ENV K=V`, `WORKDIR /w`, `USER u`, ...
        #[arg(short, long = "change")]
        change: Vec<String>,
    },
}

#[derive(Subcommand)]
enum LayerVerb {
    /// Apply one layer file (gzip, zstd or plain tar, found by its first bytes) to a directory.
    Apply {
        /// The directory.
        dir: PathBuf,
        /// The layer file.
        file: PathBuf,
    },
    /// Write the changes from LOWER to UPPER as a layer file.
    Diff {
        /// The original tree.
        lower: PathBuf,
        /// The changed tree.
        upper: PathBuf,
        /// The layer file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// gzip, zstd or none.
        #[arg(long, default_value = "gzip")]
        compression: String,
    },
}

#[derive(Subcommand)]
enum ManifestVerb {
    /// Show a manifest or index from its registry, each platform's manifest included.
    Inspect {
        /// The image.
        image: String,
    },
}

/// `-` means standard input or output, as for docker.
fn dash(p: Option<&Path>) -> Option<&Path> {
    p.filter(|p| p.as_os_str() != "-")
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    let dir = data_dir(cli.data_dir.as_deref());
    let insecure = cli.insecure.clone();
    let images = Images::open(&dir, cli.insecure, cli.quiet).await?;
    let mut out = std::io::stdout().lock();
    match cli.verb {
        Verb::Pull { image, platform } => {
            let d = images.pull(&image, platform.as_deref()).await?;
            writeln!(out, "Digest: {}", d.digest())?;
        }
        Verb::Push { image } => {
            let d = images.push(&image).await?;
            writeln!(out, "Digest: {} size: {}", d.digest(), d.size())?;
        }
        Verb::Tag { source, target } => images.tag(&source, &target).await?,
        Verb::Images { json } => {
            let rows = images.list().await?;
            if json {
                drop(out);
                return print_json(&rows);
            }
            writeln!(
                out,
                "{:<40} {:<16} {:<14} {:>12}",
                "REPOSITORY", "TAG", "IMAGE ID", "SIZE"
            )?;
            for r in rows {
                let id = r.id.split_once(':').map(|(_, h)| h).unwrap_or(&r.id);
                writeln!(
                    out,
                    "{:<40} {:<16} {:<14} {:>12}",
                    r.repository,
                    r.tag,
                    short(id),
                    r.size
                )?;
            }
        }
        Verb::Rmi {
            force,
            images: names,
        } => {
            let freed = images.remove(&dir, &names, force).await?;
            for n in names {
                writeln!(out, "Untagged: {n}")?;
            }
            writeln!(out, "Freed {freed} bytes")?;
        }
        Verb::Inspect { images: names } => {
            let mut views = Vec::new();
            for n in &names {
                views.push(images.inspect(n).await?);
            }
            drop(out);
            return print_json(&views);
        }
        Verb::Manifest {
            verb: ManifestVerb::Inspect { image },
        } => {
            let v = images.manifest_inspect(&image).await?;
            drop(out);
            return print_json(&v);
        }
        Verb::Save {
            output,
            images: names,
        } => {
            // The archive may go to standard output: release it first.
            drop(out);
            images.save(dash(output.as_deref()), &names).await?;
            return Ok(());
        }
        Verb::Load { input } => {
            for line in images.load(&dir, dash(input.as_deref())).await? {
                writeln!(out, "{line}")?;
            }
        }
        Verb::Run {
            rm,
            env,
            workdir,
            user,
            name,
            network,
            entrypoint,
            platform,
            image,
            args,
        } => {
            let network = match network.as_str() {
                "none" => oci_examples::Network::None,
                "host" => oci_examples::Network::Host,
                other => anyhow::bail!("unsupported network {other:?} (none, host)"),
            };
            let opts = oci_examples::RunOptions {
                args,
                entrypoint: entrypoint.map(|e| vec![e]),
                env,
                workdir,
                user,
                network,
                hostname: None,
                terminal: false,
                rootless: None,
            };
            let req = oci_examples::images::RunRequest {
                opts,
                name,
                rm,
                platform,
            };
            drop(out);
            let code = images.run(&dir, &image, req).await?;
            std::process::exit(code);
        }
        Verb::Login {
            registry,
            username,
            password,
            password_stdin,
        } => {
            let password = match (password, password_stdin) {
                (Some(p), false) => p,
                (None, true) => {
                    let mut p = String::new();
                    std::io::stdin().read_line(&mut p)?;
                    p.trim_end_matches(['\n', '\r']).to_owned()
                }
                _ => anyhow::bail!("give exactly one of --password and --password-stdin"),
            };
            let path =
                oci_examples::images::login(&registry, &username, &password, &insecure).await?;
            writeln!(out, "Login Succeeded (credentials in {})", path.display())?;
        }
        Verb::Ps { all: _ } => {
            writeln!(out, "{:<14} {:<40} COMMAND", "CONTAINER ID", "IMAGE")?;
            for c in Images::containers(&dir)? {
                writeln!(out, "{:<14} {:<40} {}", c.id, c.image, c.command.join(" "))?;
            }
        }
        Verb::Rm { force, containers } => {
            Images::remove_containers(&dir, &containers, force)?;
            for c in containers {
                writeln!(out, "{c}")?;
            }
        }
        Verb::Commit { container, image } => {
            let d = images.commit(&dir, &container, &image).await?;
            writeln!(out, "{}", d.digest())?;
        }
        Verb::Export { output, container } => {
            drop(out);
            images
                .export(&dir, &container, dash(output.as_deref()))
                .await?;
            return Ok(());
        }
        Verb::Unpack { image, dir, public } => {
            let r = images.unpack(&image, &dir, public).await?;
            writeln!(out, "{} layers, {} entries", r.0, r.1)?;
        }
        Verb::Layer {
            verb: LayerVerb::Apply { dir, file },
        } => {
            let r = oci_examples::images::apply_file(&dir, &file).await?;
            let id = r.diff_id.map(|d| d.to_string()).unwrap_or_default();
            writeln!(out, "{} entries, diff id {id}", r.entries)?;
        }
        Verb::Layer {
            verb:
                LayerVerb::Diff {
                    lower,
                    upper,
                    output,
                    compression,
                },
        } => {
            let (digest, diff_id) =
                oci_examples::images::diff_file(&lower, &upper, &output, &compression).await?;
            writeln!(out, "digest {digest} diff id {diff_id}")?;
        }
        Verb::Import {
            file,
            image,
            change,
        } => {
            let d = images.import(&file, &image, &change).await?;
            writeln!(out, "{}", d.digest())?;
        }
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    // Only `run` starts containers; before any thread, so that they cannot reach this
    // program's file (CVE-2019-5736).
    if matches!(cli.verb, Verb::Run { .. }) {
        if let Err(e) = oci_runtime::exe::reexec_sealed() {
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
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("oci: {e:#}");
        std::process::exit(EXIT_TOOL_FAILURE);
    }
}
