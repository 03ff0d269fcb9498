//! A Dockerfile built into the image store and tagged, BuildKit's plain progress printed:
//!
//! ```text
//! build_image DATA_DIR CONTEXT_DIR TAG
//! build_image /var/tmp/b ./app localhost:5000/app:1
//! ```

// A command-line example prints what it does.
#![allow(clippy::print_stdout)]

use oci_rs_layer::ImageStore;
use oci_rs_runtime::{BuildEvent, BuildOptions, BuildSources, DockerfileBuild};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    // RUN steps are containers: they must not reach this program's file.
    oci_rs_runtime::reexec_sealed()?;
    tokio::runtime::Runtime::new()?.block_on(build())
}

async fn build() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data, context, tag] = &args[..] else {
        return Err("usage: build_image DATA_DIR CONTEXT_DIR TAG".into());
    };
    let (data, context) = (std::path::Path::new(data), std::path::Path::new(context));
    let images = ImageStore::open(data).await?;
    let client = oci_rs_registry_client::Client::new()?;
    let sources = BuildSources {
        remote: Some(&client),
        urls: Some(&client),
        ..BuildSources::default()
    };
    let (dockerfile, file_label) = oci_rs_runtime::read_dockerfile(context, None, false)?;
    let opts = BuildOptions {
        tags: vec![tag.clone()],
        file_label,
        ..BuildOptions::default()
    };
    // Step lines carry Dockerfile text (and base images' ONBUILD triggers): printable only.
    let events = Box::new(|e: BuildEvent<'_>| match e {
        BuildEvent::Step {
            number,
            instruction,
        } => {
            println!("#{number} {}", oci_rs_image::printable(instruction))
        }
        BuildEvent::Cached { number } => println!("#{number} CACHED"),
        BuildEvent::Done { number, elapsed } => println!("#{number} DONE {elapsed:.1?}"),
        _ => {}
    });
    let built = DockerfileBuild::new(&images, sources, &dockerfile, Some(context), opts, events)?
        .build()
        .await?;
    println!("{tag} is {}", built.id);
    Ok(())
}
