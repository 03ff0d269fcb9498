//! Multi-platform builds (`docker buildx build --platform linux/amd64,linux/arm64`): the
//! Dockerfile built once per platform, then one image index of the results under the tags.

use super::error::Result;
use super::{BuildEvent, BuildEvents, BuildOptions, BuildSources, Built, DockerfileBuild};
use oci_rs_image::oci_spec::image::{ImageIndexBuilder, MediaType, PlatformBuilder};
use oci_rs_image::{ImageDestination, ManifestKind};
use oci_rs_layer::ImageStore;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Builds `dockerfile` for the platforms `opts.platform` names: one (or none: the host's)
/// is the image [`DockerfileBuild`] makes; several, comma-separated as docker buildx takes
/// them (`linux/amd64,linux/arm64`), are each built as that image for its platform (a
/// `RUN` of a foreign architecture needs the host's binfmt handler: qemu-user-static), and
/// an OCI image index of them is stored under `opts.tags`. Then [`Built::manifest`] is the
/// index, [`Built::id`] its digest, and `ran` and `cached` count the steps of every platform.
///
/// ```no_run
/// # async fn f(store: &oci_rs_layer::ImageStore) -> Result<(), oci_rs_runtime::BuildError> {
/// use oci_rs_runtime::{build_platforms, BuildOptions, BuildSources};
/// let opts = BuildOptions {
///     tags: vec!["localhost/app:1".into()],
///     platform: Some("linux/amd64,linux/arm64".into()),
///     ..BuildOptions::default()
/// };
/// let built = build_platforms(
///     store,
///     BuildSources::default(),
///     "FROM scratch\nCOPY app /app\n",
///     Some("ctx".as_ref()),
///     opts,
///     Box::new(|_| {}),
/// )
/// .await?;
/// println!("index {}", built.id);
/// # Ok(())
/// # }
/// ```
pub async fn build_platforms<'a>(
    store: &'a ImageStore,
    sources: BuildSources<'a>,
    dockerfile: &str,
    context: Option<&Path>,
    opts: BuildOptions,
    events: BuildEvents<'a>,
) -> Result<Built> {
    let platforms: Vec<String> = match &opts.platform {
        Some(list) if list.contains(',') => list.split(',').map(str::to_owned).collect(),
        _ => {
            return DockerfileBuild::new(store, sources, dockerfile, context, opts, events)?
                .build()
                .await
        }
    };
    let events = Arc::new(Mutex::new(events));
    let mut entries = Vec::new();
    let mut links = Vec::new();
    let mut steps = 0;
    let (mut ran, mut cached) = (0, 0);
    for p in &platforms {
        let spec: oci_rs_image::PlatformSpec = p.parse()?;
        let mut one = opts.clone();
        one.platform = Some(p.clone());
        one.tags = Vec::new();
        let shared = Arc::clone(&events);
        let forward: BuildEvents<'a> = Box::new(move |e: BuildEvent<'_>| {
            if let Ok(mut f) = shared.lock() {
                f(e)
            }
        });
        let mut build =
            DockerfileBuild::new(store, sources.clone(), dockerfile, context, one, forward)?;
        build.show_platform = true;
        // Exported below, once for every platform.
        let (b, l) = build.build_keeping_links().await?;
        steps = steps.max(build.step);
        links.extend(l);
        ran += b.ran;
        cached += b.cached;
        let mut platform = PlatformBuilder::default()
            .os(spec.os.as_str())
            .architecture(spec.architecture.as_str())
            .build()
            .map_err(|source| oci_rs_image::Error::Build {
                what: "a platform",
                source,
            })?;
        platform.set_variant(spec.variant.clone());
        let mut d = b.manifest.clone();
        d.set_platform(Some(platform));
        entries.push(d);
    }
    let entries_kept = entries.clone();
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(entries)
        .build()
        .map_err(|source| oci_rs_image::Error::Build {
            what: "an image index",
            source,
        })?;
    let index = oci_rs_image::Manifest::from_index(&index, ManifestKind::OciIndex)?;
    let layout = store.layout().leased()?;
    layout.put_manifest(&index, None).await?;
    let desc = index.descriptor();
    if opts.tags.is_empty() {
        store.keep_untagged(&desc).await?;
    }
    for t in &opts.tags {
        store.name_or_keep(&desc, Some(t)).await?;
    }
    // Each platform's image was kept untagged while the others built (no gc could take
    // it); the index holds them now, and they are no images of their own to list.
    for e in &entries_kept {
        store.forget_untagged(e.digest()).await?;
    }
    let mut events: BuildEvents<'a> = Box::new(move |e: BuildEvent<'_>| {
        if let Ok(mut f) = events.lock() {
            f(e)
        }
    });
    super::export_caches(
        store,
        sources.remote,
        &opts.cache_to,
        &links,
        steps + 1,
        &mut events,
    )
    .await?;
    Ok(Built {
        id: desc.digest().clone(),
        manifest: desc,
        ran,
        cached,
    })
}
