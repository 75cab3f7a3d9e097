//! `switchyard fetch [--direct] URL` (hidden): the smallest program that tries to reach a partner
//! the way a team's own script would, honouring `HTTPS_PROXY` like curl does — or, with
//! `--direct`, ignoring it like a program that opens its own sockets. The demo runs it on a
//! serverless worker to show that such a worker has no way out; no other tool (curl, python) has
//! to be installed for that.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Args)]
pub(crate) struct FetchArgs {
    /// The URL to reach (only its host and port are used: the program connects, nothing more).
    #[arg(value_name = "URL")]
    url: String,
    /// Ignore HTTPS_PROXY/HTTP_PROXY and connect directly, as a program that does not honour
    /// them would: what only the network itself can stop.
    #[arg(long)]
    direct: bool,
}

const TIMEOUT: Duration = Duration::from_secs(10);
/// Most of a proxy's answer kept for the message: enough for any explanation, bounded.
const MAX_ANSWER: usize = 64 * 1024;

pub(crate) async fn run(args: FetchArgs) -> anyhow::Result<ExitCode> {
    let url = url::Url::parse(&args.url)
        .with_context(|| format!("`{}` is not a URL; pass e.g. https://host:443/path", args.url))?;
    let target = endpoint(&url).with_context(|| format!("`{}` names no host to connect to", args.url))?;
    let names: &[&str] =
        if url.scheme() == "https" { &["HTTPS_PROXY", "https_proxy"] } else { &["HTTP_PROXY", "http_proxy"] };
    let proxy =
        names.iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty())).filter(|_| !args.direct);
    let Some(proxy) = proxy else {
        return Ok(match tokio::time::timeout(TIMEOUT, TcpStream::connect(&target)).await {
            Ok(Ok(_)) => {
                let why = if args.direct { "--direct" } else { "no proxy is set" };
                println!("connected to {target} directly ({why})");
                ExitCode::SUCCESS
            }
            Ok(Err(e)) => {
                eprintln!("cannot connect to {target}: {e}");
                ExitCode::from(1)
            }
            Err(_) => {
                eprintln!("cannot connect to {target}: no answer within {}s", TIMEOUT.as_secs());
                ExitCode::from(1)
            }
        });
    };
    let proxy = url::Url::parse(&proxy).context("the proxy variable does not hold a URL")?;
    let (status, answer) = connect(&proxy, &target).await?;
    if status == 200 {
        println!("connected through the proxy to {target}");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("the proxy refused CONNECT {target}: {}", answer.trim_end());
    Ok(ExitCode::from(1))
}

/// `host:port` of a URL, the scheme's port when it names none.
fn endpoint(url: &url::Url) -> Option<String> {
    let host = match url.host()? {
        url::Host::Ipv6(ip) => format!("[{ip}]"),
        host => host.to_string(),
    };
    Some(format!("{host}:{}", url.port_or_known_default()?))
}

/// Asks the proxy for a tunnel. Returns its status code and its answer (status line and body) as
/// text; the proxy's credentials are sent, never shown.
async fn connect(proxy: &url::Url, target: &str) -> anyhow::Result<(u16, String)> {
    let address = endpoint(proxy).context("the proxy URL names no host")?;
    let mut stream = match tokio::time::timeout(TIMEOUT, TcpStream::connect(&address)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => bail!("cannot connect to the proxy at {address}: {e}"),
        Err(_) => bail!("cannot connect to the proxy at {address}: no answer within {}s", TIMEOUT.as_secs()),
    };
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if !proxy.username().is_empty() {
        let user = percent_decode(proxy.username());
        let password = percent_decode(proxy.password().unwrap_or(""));
        request.push_str(&format!(
            "Proxy-Authorization: Basic {}\r\n",
            base64(format!("{user}:{password}").as_bytes())
        ));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .with_context(|| format!("writing to the proxy at {address}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        // Up to the end of the head; then, unless it is a tunnel, the body up to its length or
        // the end of the connection.
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if let Some(end) = find(&answer, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&answer[..end]).to_string();
                if status_of(&head) == Some(200) {
                    break;
                }
                let length = head.lines().find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                });
                if length.is_some_and(|len| answer.len() >= end + 4 + len) {
                    break;
                }
            }
            if answer.len() >= MAX_ANSWER {
                break;
            }
        }
        std::io::Result::Ok(())
    };
    match tokio::time::timeout(TIMEOUT, read).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("reading the proxy's answer from {address}: {e}"),
        Err(_) if !answer.is_empty() => {}
        Err(_) => bail!("the proxy at {address} did not answer CONNECT within {}s", TIMEOUT.as_secs()),
    }
    let text = String::from_utf8_lossy(&answer).to_string();
    let Some(status) = status_of(&text) else {
        bail!(
            "the proxy at {address} answered something that is not HTTP: {:?}",
            text.chars().take(200).collect::<String>()
        );
    };
    // The status line, then the body: the headers say nothing a person needs here.
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let line = head.lines().next().unwrap_or_default();
    Ok((status, if body.is_empty() { line.to_owned() } else { format!("{line}\n{body}") }))
}

fn status_of(head: &str) -> Option<u16> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("attempt-5:x", "YXR0ZW1wdC01Ong="),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    /// A proxy that reads one request and answers `answer`; returns what it was asked.
    async fn proxy(answer: &'static str) -> (url::Url, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://attempt-7:x@{}", listener.local_addr().unwrap()).parse().unwrap();
        let asked = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).to_string()
        });
        (url, asked)
    }

    #[tokio::test]
    async fn a_refusing_proxy_s_status_line_and_body_come_back() {
        let body = "{\"code\":\"serverless_no_egress\",\"message\":\"serverless workers have no egress\"}";
        let answer: &'static str = Box::leak(
            format!("HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                .into_boxed_str(),
        );
        let (url, asked) = proxy(answer).await;
        let (status, text) = connect(&url, "127.0.0.1:9443").await.unwrap();
        assert_eq!(status, 403);
        assert_eq!(text, format!("HTTP/1.1 403 Forbidden\n{body}"));
        let asked = asked.await.unwrap();
        assert!(asked.starts_with("CONNECT 127.0.0.1:9443 HTTP/1.1\r\n"), "{asked}");
        assert!(asked.contains("Proxy-Authorization: Basic YXR0ZW1wdC03Ong=\r\n"), "{asked}");
    }

    #[tokio::test]
    async fn a_tunnel_is_reported_as_connected() {
        let (url, _asked) = proxy("HTTP/1.1 200 Connection established\r\n\r\n").await;
        let (status, _) = connect(&url, "example.com:443").await.unwrap();
        assert_eq!(status, 200);
    }
}
