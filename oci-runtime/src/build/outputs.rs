//! Where a build's result goes besides the store (`docker build --output`): its
//! filesystem as a directory or a tar, or the image as an OCI or docker archive.

use super::error::{invalid, BuildError, Context, Result};
use super::Built;
use oci_rs_image::{ArchiveFormat, ArchiveWriter, CopyOptions};
use oci_rs_layer::ImageStore;
use std::path::{Path, PathBuf};

/// One `--output` of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildOutput {
    /// `type=local,dest=DIR` (or a bare `DIR`): the image's filesystem into `DIR`.
    Local(PathBuf),
    /// `type=tar,dest=FILE`: the image's filesystem as one tar.
    Tar(PathBuf),
    /// `type=oci,dest=FILE`: the image as an OCI archive.
    Oci(PathBuf),
    /// `type=docker,dest=FILE`: the image as a docker archive (`docker load` reads it).
    Docker(PathBuf),
}

impl std::str::FromStr for BuildOutput {
    type Err = BuildError;

    /// docker's `--output` value: `type=local|tar|oci|docker,dest=PATH`, or a bare path
    /// for `local`.
    ///
    /// ```
    /// use oci_rs_runtime::BuildOutput;
    /// let o: BuildOutput = "type=tar,dest=out.tar".parse().unwrap();
    /// assert_eq!(o, BuildOutput::Tar("out.tar".into()));
    /// assert_eq!("out".parse::<BuildOutput>().unwrap(), BuildOutput::Local("out".into()));
    /// assert!("type=registry".parse::<BuildOutput>().is_err());
    /// ```
    fn from_str(spec: &str) -> Result<Self> {
        if !spec.contains('=') {
            return match spec {
                "" | "-" => Err(invalid!(
                    "--output {spec}: give a directory, or type=tar,dest=FILE"
                )),
                dir => Ok(Self::Local(PathBuf::from(dir))),
            };
        }
        let (mut typ, mut dest) = (None, None);
        for part in spec.split(',') {
            match part.split_once('=') {
                Some(("type", v)) => typ = Some(v),
                Some(("dest", v)) => dest = Some(PathBuf::from(v)),
                _ => return Err(invalid!("--output {spec}: unknown option {part}")),
            }
        }
        let dest = || {
            dest.clone()
                .filter(|d| !d.as_os_str().is_empty() && d.as_os_str() != "-")
                .ok_or_else(|| invalid!("--output {spec}: needs dest=PATH"))
        };
        match typ.unwrap_or("local") {
            "local" => Ok(Self::Local(dest()?)),
            "tar" => Ok(Self::Tar(dest()?)),
            "oci" => Ok(Self::Oci(dest()?)),
            "docker" => Ok(Self::Docker(dest()?)),
            other => Err(invalid!(
                "--output {spec}: type={other} (local, tar, oci or docker; --push for a registry)"
            )),
        }
    }
}

impl BuildOutput {
    /// Writes `built` (an image of `store`, tagged or not) here; `tag` names it in an
    /// archive.
    pub async fn write(&self, store: &ImageStore, built: &Built, tag: Option<&str>) -> Result<()> {
        let label = built.id.to_string();
        match self {
            Self::Local(dir) => {
                store
                    .unpack_descriptor(&built.manifest, &label, dir, true)
                    .await?;
            }
            Self::Tar(file) => {
                let parent = parent_of(file);
                let scratch = tempfile::Builder::new()
                    .prefix(".build-output-")
                    .tempdir_in(parent)
                    .with_context(|| format!("making a directory beside {}", file.display()))?;
                let empty = scratch.path().join("empty");
                let tree = scratch.path().join("tree");
                std::fs::create_dir(&empty)?;
                store
                    .unpack_descriptor(&built.manifest, &label, &tree, true)
                    .await?;
                oci_rs_layer::diff_to_file(
                    &empty,
                    &tree,
                    file,
                    oci_rs_image::Compression::None,
                    &oci_rs_layer::DiffOptions::default(),
                )
                .await?;
            }
            Self::Oci(file) | Self::Docker(file) => {
                let format = if matches!(self, Self::Oci(_)) {
                    ArchiveFormat::Oci
                } else {
                    ArchiveFormat::Docker
                };
                let w = ArchiveWriter::create(file, format).await?;
                store
                    .save_descriptor(&w, &built.manifest, tag, &CopyOptions::default())
                    .await?;
            }
        }
        Ok(())
    }
}

fn parent_of(file: &Path) -> &Path {
    file.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}
