//! `oci build`'s glue over oci-rs-runtime's [`DockerfileBuild`](oci_rs_runtime::DockerfileBuild): a context or Dockerfile on
//! standard input, and progress printed as BuildKit's plain output.

use crate::images::Images;
use anyhow::{bail, Context, Result};
use oci_rs_runtime::{
    build_platforms, read_dockerfile, read_dockerignore, BuildEvent, BuildOptions, BuildSources,
    Built, StreamedContext,
};
use std::io::Write;
use std::path::Path;

/// `oci build`: reads the Dockerfile (`file`, default `CONTEXT/Dockerfile`; `-` for
/// standard input) and the context (`-`: a tar on standard input, or a Dockerfile alone, as
/// [`StreamedContext`] reads it), builds with progress on standard error (with
/// `quiet`, only a failing step's output), and tags.
pub async fn build_cli(
    images: &Images,
    context: &Path,
    file: Option<&Path>,
    mut opts: BuildOptions,
    quiet: bool,
) -> Result<Built> {
    let stdin_context = context == Path::new("-");
    let stdin_file = file == Some(Path::new("-"));
    if stdin_context && stdin_file {
        bail!("the Dockerfile and the context cannot both come from standard input");
    }
    let mut streamed_dockerfile = None;
    let _scratch;
    let context_dir = if stdin_context {
        match StreamedContext::read(tokio::io::stdin(), images.data_dir()).await? {
            StreamedContext::Context(dir) => {
                let p = dir.path().to_path_buf();
                _scratch = Some(dir);
                Some(p)
            }
            // A Dockerfile alone on standard input: a build without a context.
            StreamedContext::Dockerfile(text) => {
                _scratch = None;
                streamed_dockerfile = Some(text);
                None
            }
        }
    } else {
        _scratch = None;
        if !context.is_dir() {
            bail!("the context {} is not a directory", context.display());
        }
        Some(context.to_path_buf())
    };
    let (text, label) = match (streamed_dockerfile, &context_dir) {
        (Some(t), _) => (t, "Dockerfile".to_owned()),
        (None, _) if stdin_file => {
            let mut t = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut tokio::io::stdin(), &mut t)
                .await
                .context("reading the Dockerfile from standard input")?;
            (t, "Dockerfile".to_owned())
        }
        (None, Some(dir)) => {
            let read = read_dockerfile(dir, file, stdin_context)?;
            // `NAME.dockerignore` beside the Dockerfile wins over the context's.
            opts.dockerignore = read_dockerignore(dir, file, stdin_context)?;
            read
        }
        (None, None) => bail!("no Dockerfile"),
    };
    opts.file_label = label;
    if !quiet {
        opts.run_output = Some(std::sync::Arc::new(rustix::io::dup(std::io::stderr())?));
    }
    let sources = BuildSources {
        remote: Some(images),
        urls: Some(images),
        pull: images.copy_options(None)?,
    };
    let events = Box::new(move |e: BuildEvent<'_>| {
        let mut err = std::io::stderr().lock();
        // Step lines echo instructions, ONBUILD triggers (a base image's text) among them.
        let _ = match e {
            BuildEvent::Step {
                number,
                instruction,
            } if !quiet => writeln!(err, "#{number} {}", oci_rs_image::printable(instruction)),
            BuildEvent::Cached { number } if !quiet => writeln!(err, "#{number} CACHED"),
            BuildEvent::Done { number, elapsed } if !quiet => {
                writeln!(err, "#{number} DONE {:.1}s", elapsed.as_secs_f64())
            }
            BuildEvent::UnusedArg { name } => writeln!(
                err,
                "[Warning] one or more build args were not consumed: {}",
                oci_rs_image::printable(name)
            ),
            BuildEvent::FailedOutput { log, .. } => std::io::copy(log, &mut err).map(|_| ()),
            BuildEvent::CacheProblem { location, error } => {
                let e = oci_rs_image::chain(error);
                writeln!(
                    err,
                    "WARNING: cache {location}: {}",
                    oci_rs_image::printable(&e)
                )
            }
            _ => Ok(()),
        };
    });
    // One platform, or several (`--platform a,b`: one image each, under an index).
    Ok(build_platforms(images, sources, &text, context_dir.as_deref(), opts, events).await?)
}
