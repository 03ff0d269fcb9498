//! The whole life cycle in one program that uses the four crates and nothing of `oci`'s:
//! pull and run, a detached run by name with a published port, its logs, stop, a Dockerfile
//! build, commit and push.
//!
//! ```text
//! embed REGISTRY DATA_DIR CONTEXT_DIR HOST_PORT
//! embed localhost:5000 /var/tmp/embed ./app 8080
//! ```
//!
//! `REGISTRY` holds `small/busybox:1`; the context's Dockerfile builds `small/built:1`, and
//! the web container is committed as `small/web:1`; both are pushed there.

// A command-line example prints what it does.
#![allow(clippy::print_stdout)]

use oci_rs_image::CopyOptions;
use oci_rs_layer::{CommitOptions, ImageStore};
use oci_rs_registry_client::Client;
use oci_rs_runtime::{BuildOptions, BuildSources, Containers, DockerfileBuild, LogQuery};
use oci_rs_runtime::{NetworkMode, RunImage, RunRequest};
use std::io::{Read, Write};
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    // A container's monitor is this program again; then containers must not reach its file.
    oci_rs_runtime::serve_if_requested();
    oci_rs_runtime::reexec_sealed()?;
    tokio::runtime::Runtime::new()?.block_on(life_cycle())
}

/// A detached container named `name` running `args` with no network.
fn request(name: &str, args: &[&str]) -> RunRequest {
    let mut req = RunRequest {
        name: Some(name.into()),
        detach: true,
        ..RunRequest::default()
    };
    req.opts.args = args.iter().map(|a| a.to_string()).collect();
    req.opts.network = NetworkMode::None;
    req
}

async fn life_cycle() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [registry, data, context, port] = &args[..] else {
        return Err("usage: embed REGISTRY DATA_DIR CONTEXT_DIR HOST_PORT".into());
    };
    let (data, context) = (std::path::Path::new(data), std::path::Path::new(context));
    let client = Client::new()?; // docker's credentials; loopback registries over http
    let images = ImageStore::open(data).await?;
    let containers = Containers::open(data)?;
    let pulls = CopyOptions::default();
    let print = &mut |_, b: &[u8]| std::io::stdout().write_all(b);

    // Pull and run: the store has no busybox yet, so it is pulled and unpacked on the way.
    let name = format!("{registry}/small/busybox:1");
    let found = images
        .image_for_run(&name, None, Some((&client, &pulls)), |_| {})
        .await?;
    let busybox = RunImage::from_store(&images, found, &name);
    let (id, _) = containers
        .run(
            &busybox,
            request("hello", &["/bin/busybox", "echo", "hello"]),
        )
        .await?;
    println!("hello exited with {}", containers.wait(&id)?);
    containers.logs("hello", &LogQuery::default(), false, print)?;
    containers.remove("hello", false)?;

    // Detached, by name, on the default bridge with a published port: busybox's httpd.
    let mut web = request(
        "web",
        &[
            "/bin/busybox",
            "httpd",
            "-f",
            "-v",
            "-p",
            "80",
            "-h",
            "/etc",
        ],
    );
    web.opts.network = NetworkMode::Bridge;
    web.publish = oci_rs_runtime::parse_publish(&format!("{port}:80"))?;
    containers.run(&busybox, web).await?;
    let mut page = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>()?)) {
            s.write_all(b"GET /hostname HTTP/1.0\r\n\r\n")?;
            s.read_to_string(&mut page)?;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("web served {} bytes", page.len());
    // Stopped (its stop signal, then SIGKILL after 5 s) by name; then everything it logged.
    containers.stop("web", Duration::from_secs(5))?;
    containers.logs("web", &LogQuery::default(), false, print)?;

    // A Dockerfile build into the same store; FROM finds the image pulled above.
    let (dockerfile, file_label) = oci_rs_runtime::read_dockerfile(context, None, false)?;
    let sources = BuildSources {
        remote: Some(&client),
        urls: Some(&client),
        pull: pulls.clone(),
    };
    let built_name = format!("{registry}/small/built:1");
    let opts = BuildOptions {
        tags: vec![built_name.clone()],
        file_label,
        ..BuildOptions::default()
    };
    let events = Box::new(|_: oci_rs_runtime::BuildEvent<'_>| {});
    let build = DockerfileBuild::new(&images, sources, &dockerfile, Some(context), opts, events)?;
    println!("built {}", build.build().await?.id);

    // Commit the stopped web container, and push both images.
    let web_name = format!("{registry}/small/web:1");
    let how = CommitOptions::default();
    containers
        .commit(&images, "web", Some(&web_name), &how, true)
        .await?;
    for pushed in [&built_name, &web_name] {
        let d = images.push(&client, pushed, &pulls).await?;
        println!("pushed {pushed} {}", d.digest());
    }
    containers.remove("web", false)?;
    Ok(())
}
