//! The image verbs: pull, push, tag, images, history, build, rmi, prune, inspect, manifest
//! lists, save, load, login, logout, commit, export, unpack, layer, import.

use crate::args::*;
use crate::{dash, print_docs, print_json};
use anyhow::{Context, Result};
use oci_examples::images::{short, Images};
use oci_examples::{terminal, text};
use oci_rs_runtime::format::{self, Format};
use oci_rs_runtime::Containers;
use std::io::Write;
use std::path::Path;

/// One image verb, writing to `out` (released before anything else writes to standard
/// output).
pub(crate) async fn image_verb(
    images: &Images,
    dir: &Path,
    insecure: Vec<String>,
    verb: Verb,
    mut out: std::io::StdoutLock<'static>,
) -> Result<()> {
    match verb {
        Verb::Pull {
            image,
            platform,
            quiet,
            all_tags,
            unpack,
        } => {
            let wanted = match all_tags {
                true => images.all_tags(&image).await?,
                false => vec![image],
            };
            for image in wanted {
                let r = oci_rs_image::ImageReference::parse(&image)?;
                if !quiet {
                    let tag = r
                        .tag()
                        .map(str::to_owned)
                        .or_else(|| r.digest().map(|d| d.to_string()))
                        .unwrap_or_else(|| "latest".into());
                    // docker names the repository's path, without the registry.
                    writeln!(out, "{tag}: Pulling from {}", r.repository())?;
                    out.flush()?;
                }
                let report = images
                    .pull_report(&image, platform.as_deref(), unpack)
                    .await?;
                if quiet {
                    writeln!(out, "{}", report.reference)?;
                } else {
                    for l in report.lines() {
                        writeln!(out, "{}", oci_rs_image::printable(&l))?;
                    }
                }
            }
        }
        Verb::Push { image } => {
            let d = images.push(&image).await?;
            writeln!(out, "Digest: {} size: {}", d.digest(), d.size())?;
        }
        Verb::Tag { source, target } => images.tag(&source, &target).await?,
        Verb::Images {
            json,
            all: _,
            quiet,
            digests,
            no_trunc,
            filter,
            format,
            reference,
        } => {
            let rows = images.list().await?;
            let keep = oci_rs_layer::ImageFilter::parse(reference.as_deref(), &filter)?;
            let rows: Vec<_> = rows.into_iter().filter(|r| keep.matches(r)).collect();
            if json {
                drop(out);
                return print_json(&rows);
            }
            let id_of = |r: &oci_rs_layer::ImageRow| {
                let hex = r.id.split_once(':').map(|(_, h)| h).unwrap_or(&r.id);
                if no_trunc {
                    r.id.clone()
                } else {
                    short(hex).to_owned()
                }
            };
            if quiet {
                let mut seen = std::collections::BTreeSet::new();
                for r in &rows {
                    if seen.insert(r.id.clone()) {
                        writeln!(out, "{}", id_of(r))?;
                    }
                }
                return Ok(());
            }
            // docker's default is its table (with the digests after the tag with
            // --digests), aligned as its tabwriter aligns it.
            let default = if digests {
                r"table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
            } else {
                r"table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
            };
            let f = Format::parse(format.as_deref().unwrap_or("table"), default)?;
            let docs: Vec<_> = rows
                .iter()
                .map(|r| format::image_fields(r, no_trunc))
                .collect();
            write!(out, "{}", f.render_all(&docs, format::IMAGE_HEADERS)?)?;
        }
        Verb::History {
            no_trunc,
            quiet,
            human,
            format,
            image,
        } => {
            let rows = images.history(&image).await?;
            if quiet && format.is_none() {
                for r in &rows {
                    writeln!(out, "{}", format::history_id(r, no_trunc))?;
                }
                return Ok(());
            }
            // docker's default is its table, aligned as its tabwriter aligns it.
            let f = Format::parse(
                format.as_deref().unwrap_or("table"),
                r"table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
            )?;
            let docs: Vec<_> = rows
                .iter()
                .map(|r| format::history_fields(r, no_trunc, human))
                .collect();
            write!(out, "{}", f.render_all(&docs, format::HISTORY_HEADERS)?)?;
        }
        Verb::Build {
            tag,
            file,
            build_arg,
            target,
            no_cache,
            pull,
            platform,
            label,
            secret,
            network,
            iidfile,
            output,
            push,
            cache_to,
            cache_from,
            allow,
            ssh,
            progress,
            quiet,
            context,
        } => {
            if !matches!(progress.as_str(), "plain" | "tty" | "auto" | "quiet") {
                anyhow::bail!("--progress {progress}: use plain, tty, auto or quiet");
            }
            // BuildKit's `--progress quiet` is `-q`.
            let quiet = quiet || progress == "quiet";
            let network: oci_rs_runtime::BuildNetwork = network.parse()?;
            let pairs = |list: Vec<String>,
                         env: bool|
             -> Result<std::collections::BTreeMap<String, String>> {
                let mut m = std::collections::BTreeMap::new();
                for kv in list {
                    match kv.split_once('=') {
                        Some((k, v)) => {
                            m.insert(k.to_owned(), v.to_owned());
                        }
                        None if env => {
                            if let Ok(v) = std::env::var(&kv) {
                                m.insert(kv, v);
                            }
                        }
                        None => {
                            m.insert(kv, String::new());
                        }
                    }
                }
                Ok(m)
            };
            let outputs: Vec<oci_rs_runtime::BuildOutput> =
                output.iter().map(|o| o.parse()).collect::<Result<_, _>>()?;
            if push && tag.is_empty() {
                anyhow::bail!("--push needs a name to push to (-t)");
            }
            let names = tag.clone();
            let opts = oci_rs_runtime::BuildOptions {
                tags: tag,
                build_args: pairs(build_arg, true)?,
                target,
                no_cache,
                pull,
                platform,
                labels: pairs(label, false)?,
                network,
                secrets: secret
                    .iter()
                    .map(|s| oci_rs_runtime::BuildSecret::from_flag(s))
                    .collect::<Result<_, _>>()?,
                run_output: None,
                file_label: String::new(),
                dockerignore: None,
                cache_to: cache_to
                    .iter()
                    .map(|c| c.parse())
                    .collect::<Result<_, _>>()?,
                cache_from: cache_from
                    .iter()
                    .map(|c| c.parse())
                    .collect::<Result<_, _>>()?,
                allow: allow.iter().map(|a| a.parse()).collect::<Result<_, _>>()?,
                ssh: ssh
                    .iter()
                    .map(|s| oci_rs_runtime::BuildSsh::from_flag(s))
                    .collect::<Result<_, _>>()?,
            };
            let built =
                oci_examples::build::build_cli(images, &context, file.as_deref(), opts, quiet)
                    .await?;
            for o in &outputs {
                o.write(images, &built, names.first().map(String::as_str))
                    .await?;
            }
            if push {
                for n in &names {
                    images.push(n).await?;
                }
            }
            if let Some(p) = iidfile {
                std::fs::write(&p, built.id.to_string()).map_err(|e| {
                    anyhow::Error::new(e).context(format!("writing {}", p.display()))
                })?;
            }
            writeln!(out, "{}", built.id)?;
        }
        Verb::Builder {
            verb: BuilderVerb::Prune { .. },
        } => {
            let n = images.prune_cache()?;
            let freed = images.prune(false).await?.bytes_freed;
            writeln!(out, "Deleted build cache objects: {n}")?;
            writeln!(out, "Total reclaimed space: {}", text::human_size(freed))?;
        }
        Verb::Image {
            verb: ImageVerb::Prune { all, force: _ },
        } => {
            let pruned = images.prune(all).await?;
            if !pruned.untagged.is_empty() || !pruned.deleted.is_empty() {
                writeln!(out, "Deleted Images:")?;
                for n in &pruned.untagged {
                    writeln!(out, "untagged: {}", oci_rs_image::printable(n))?;
                }
                for id in &pruned.deleted {
                    writeln!(out, "deleted: {id}")?;
                }
                writeln!(out)?;
            }
            let freed = pruned.bytes_freed;
            writeln!(out, "Total reclaimed space: {}", text::human_size(freed))?;
        }
        Verb::Rmi {
            force,
            images: names,
        } => {
            let removed = Containers::open(dir)?
                .remove_images(images, &names, force)
                .await?;
            for n in &removed.untagged {
                writeln!(out, "Untagged: {}", oci_rs_image::printable(n))?;
            }
            for id in &removed.deleted {
                writeln!(out, "Deleted: {id}")?;
            }
        }
        Verb::Inspect {
            format,
            kind,
            images: names,
        } => {
            let store = Containers::open(dir)?;
            let mut views = Vec::new();
            // docker's: each name looked up (containers first without --type), the found
            // ones printed, an error for each missing one, and 1 at the end.
            let mut missing = Vec::new();
            for n in &names {
                let container = match kind.as_deref() {
                    Some("image") => None,
                    _ => store.resolve(n).ok(),
                };
                let found = match container {
                    Some(id) => Some(serde_json::to_value(store.inspect(&id)?)?),
                    None if kind.as_deref() == Some("container") => None,
                    None => match images.inspect(n).await {
                        Ok(i) => Some(serde_json::to_value(i)?),
                        Err(oci_rs_layer::Error::NoSuchImage(_)) => None,
                        Err(e) => return Err(e.into()),
                    },
                };
                match found {
                    Some(v) => views.push(v),
                    None => missing.push(match kind.as_deref() {
                        Some("container") => format!("No such container: {n}"),
                        Some(_) => format!("No such image: {n}"),
                        None => format!("No such object: {n}"),
                    }),
                }
            }
            // What was found, then an error for each missing one, as docker prints them.
            print_docs(&views, format.as_deref(), &mut out)?;
            if !missing.is_empty() {
                out.flush()?;
                anyhow::bail!("{}", missing.join("\n"));
            }
        }
        Verb::Manifest {
            verb: ManifestVerb::Inspect { verbose, image },
        } => {
            // docker prints the document itself, as the registry sent it, indented with
            // tabs (Go's json.Indent); the verbose form with -v.
            if verbose {
                let v = images.manifest_inspect(&image).await?;
                drop(out);
                return print_json(&v);
            }
            let raw = images.manifest_bytes(&image).await?;
            let text = oci_rs_runtime::format::indent_json(&raw, "\t")
                .ok_or_else(|| anyhow::anyhow!("the manifest of {image} is not JSON"))?;
            writeln!(out, "{text}")?;
        }
        Verb::Manifest {
            verb:
                ManifestVerb::Create {
                    amend,
                    list,
                    images: members,
                },
        } => {
            let d = images.manifest_create(&list, &members, amend).await?;
            writeln!(out, "Created manifest list {list} ({})", d.digest())?;
        }
        Verb::Manifest {
            verb:
                ManifestVerb::Annotate {
                    os,
                    arch,
                    variant,
                    list,
                    image,
                },
        } => {
            images
                .manifest_annotate(
                    &list,
                    &image,
                    os.as_deref(),
                    arch.as_deref(),
                    variant.as_deref(),
                )
                .await?;
        }
        Verb::Manifest {
            verb: ManifestVerb::Push { list },
        } => {
            let d = images.push(&list).await?;
            writeln!(out, "{}", d.digest())?;
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
            for line in images.load(dash(input.as_deref())).await? {
                // Names an archive carries.
                writeln!(out, "{}", oci_rs_image::printable(&line))?;
            }
        }
        Verb::Login {
            registry,
            username,
            password,
            password_stdin,
        } => {
            let registry = registry.unwrap_or_else(|| "docker.io".into());
            let interactive = "Cannot perform an interactive login from a non TTY device";
            let username = match username {
                Some(u) => u,
                None => terminal::prompt("Username: ", true)?
                    .ok_or_else(|| anyhow::anyhow!("{interactive}"))?,
            };
            let password = match (password, password_stdin) {
                (Some(_), true) => {
                    anyhow::bail!("--password and --password-stdin are mutually exclusive")
                }
                (Some(p), false) => p,
                (None, true) => {
                    let mut p = String::new();
                    std::io::stdin().read_line(&mut p)?;
                    p.trim_end_matches(['\n', '\r']).to_owned()
                }
                (None, false) => terminal::prompt("Password: ", false)?
                    .ok_or_else(|| anyhow::anyhow!("{interactive}"))?,
            };
            if username.is_empty() || password.is_empty() {
                anyhow::bail!("a user name and a password are needed");
            }
            let mut b = oci_rs_registry_client::Client::builder();
            for r in &insecure {
                b = b.insecure_registry(r);
            }
            let stored = b
                .login(&registry, &username, &password)
                .await
                .with_context(|| format!("logging in to {registry}"))?;
            match stored {
                oci_rs_registry_client::StoredIn::ConfigFile(path) => {
                    writeln!(out, "Login Succeeded (credentials in {})", path.display())?
                }
                oci_rs_registry_client::StoredIn::Helper(h) => writeln!(
                    out,
                    "Login Succeeded (credentials in the docker-credential-{h} store)"
                )?,
                _ => writeln!(out, "Login Succeeded")?,
            }
        }
        Verb::Logout { registry } => {
            let registry = registry.unwrap_or_else(|| "docker.io".into());
            let dir = oci_rs_registry_client::docker_config_dir()
                .ok_or_else(|| anyhow::anyhow!("neither DOCKER_CONFIG nor HOME is set"))?;
            if oci_rs_registry_client::remove_login(&dir, &registry, None).await? {
                writeln!(out, "Removing login credentials for {registry}")?;
            } else {
                writeln!(out, "Not logged in to {registry}")?;
            }
        }
        Verb::Commit {
            message,
            author,
            change,
            pause,
            container,
            image,
        } => {
            let how = oci_rs_layer::CommitOptions {
                message,
                author,
                changes: change,
                ..Default::default()
            };
            let d = Containers::open(dir)?
                .commit(images, &container, image.as_deref(), &how, pause)
                .await?;
            // docker prints the image id (the config's digest), which inspect and run take.
            writeln!(out, "{}", images.image_id(&d).await?)?;
        }
        Verb::Cp {
            src,
            dst,
            follow_link,
            archive,
        } => {
            drop(out);
            let store = Containers::open(dir)?;
            let how = oci_rs_runtime::CopyIn {
                follow_link,
                copy_uid_gid: archive,
            };
            match (
                oci_rs_runtime::parse_container_path(&src),
                oci_rs_runtime::parse_container_path(&dst),
            ) {
                (Some((c, p)), None) if dst == "-" => {
                    let out = tokio::io::stdout();
                    let (_, mut w) = match follow_link {
                        true => store.copy_from_following(c, p, out).await?,
                        false => store.copy_from(c, p, out).await?,
                    };
                    tokio::io::AsyncWriteExt::flush(&mut w).await?;
                }
                (None, Some((c, p))) if src == "-" => {
                    store.copy_into(c, p, tokio::io::stdin(), how).await?
                }
                (Some((c, p)), None) => {
                    store
                        .copy_to_host_following(c, p, Path::new(&dst), follow_link)
                        .await?;
                }
                (None, Some((c, p))) => {
                    store
                        .copy_from_host_with(Path::new(&src), c, p, how)
                        .await?
                }
                _ => anyhow::bail!("cp: one side is CONTAINER:PATH and the other a host path or -"),
            }
            return Ok(());
        }
        Verb::Export { output, container } => {
            drop(out);
            images
                .export(&Containers::open(dir)?, &container, dash(output.as_deref()))
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
            let r = oci_rs_layer::apply_file(&dir, &file, &Default::default()).await?;
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
            let compression = match compression.as_str() {
                "gzip" => oci_rs_image::Compression::Gzip,
                "zstd" => oci_rs_image::Compression::Zstd,
                "none" => oci_rs_image::Compression::None,
                other => anyhow::bail!("unknown compression {other:?} (gzip, zstd, none)"),
            };
            let opts = oci_rs_layer::DiffOptions::from_env();
            let (desc, diff_id) =
                oci_rs_layer::diff_to_file(&lower, &upper, &output, compression, &opts).await?;
            let digest = desc.digest();
            writeln!(out, "digest {digest} diff id {diff_id}")?;
        }
        Verb::Import {
            file,
            image,
            change,
            platform,
            message,
        } => {
            let (image, platform) = (image.as_deref(), platform.as_deref());
            let d = images
                .import(&file, image, &change, platform, message.as_deref())
                .await?;
            writeln!(out, "{}", images.image_id(&d).await?)?;
        }
        _ => anyhow::bail!("not an image verb"),
    }
    Ok(())
}
