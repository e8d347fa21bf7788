//! A scriptable registry server on 127.0.0.1: requests, replies, slow and endless bodies.

use super::*;

/// One request as the server read it.
pub(crate) struct Req {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl Req {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) type Headers = Vec<(String, String)>;

pub(crate) fn h(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What the server does with a request.
pub(crate) enum Reply {
    /// Status, headers and a whole body (Content-Length set).
    Full(u16, Headers, Vec<u8>),
    /// 200 claiming `claimed` bytes, sending `body`, then closing.
    Short(Headers, u64, Vec<u8>),
    /// 200 with Content-Length `claimed` and `chunk` repeated until the client goes away.
    Flood(Headers, u64, Vec<u8>),
    /// 200, chunked, `chunk` repeated until the client goes away.
    Endless(Headers, Vec<u8>),
    /// 200, chunked, `first`, then `chunk` repeated until the client goes away.
    EndlessAfter(Headers, Vec<u8>, Vec<u8>),
    /// 200 with Content-Length `claimed`, `body`, then a byte every 300 ms.
    Drip(Headers, u64, Vec<u8>),
    /// 200 with Content-Length `claimed`, `body`, then silence.
    Stall(Headers, u64, Vec<u8>),
    /// The request is read and never answered.
    Silent,
    /// Bytes in the given order, then close (a generated body too big to hold).
    Stream(Headers, u64, Box<dyn Read + Send>),
}

pub(crate) type Handler = dyn Fn(&Req) -> Reply + Send + Sync;

/// An HTTP/1.1 server on 127.0.0.1 answering every request with a fresh connection-close
/// reply from its handler, in a thread per connection.
pub(crate) struct Server {
    pub(crate) port: u16,
    pub(crate) log: Arc<Mutex<Vec<String>>>,
    pub(crate) stop: Arc<AtomicBool>,
}

impl Server {
    pub(crate) fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (log2, stop2) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (handler, log, stop) = (handler.clone(), log2.clone(), stop2.clone());
                std::thread::spawn(move || serve(conn, &*handler, &log, &stop));
            }
        });
        Server { port, log, stop }
    }

    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// "METHOD PATH [auth]" of every request so far.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

pub(crate) fn read_request(conn: &TcpStream) -> Option<Req> {
    let mut r = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    let mut total = 0;
    loop {
        let mut l = String::new();
        let n = r.read_line(&mut l).ok()?;
        total += n;
        if n == 0 || total > 16 << 20 {
            return None;
        }
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Some(Req {
        method,
        path,
        headers,
    })
}

pub(crate) fn head(status: u16, headers: &Headers, length: Option<u64>) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Whatever",
    };
    let mut s = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    match length {
        Some(n) => s.push_str(&format!("Content-Length: {n}\r\n")),
        None => s.push_str("Transfer-Encoding: chunked\r\n"),
    }
    s.push_str("\r\n");
    s.into_bytes()
}

pub(crate) fn serve(
    mut conn: TcpStream,
    handler: &Handler,
    log: &Mutex<Vec<String>>,
    stop: &AtomicBool,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let Some(req) = read_request(&conn) else {
        return;
    };
    log.lock().unwrap().push(format!(
        "{} {}{}",
        req.method,
        req.path,
        if req.header("Authorization").is_some() {
            " [auth]"
        } else {
            ""
        }
    ));
    let with_body = req.method != "HEAD";
    // Write errors mean the client went away: that ends the connection.
    let _ = (|| -> std::io::Result<()> {
        match handler(&req) {
            Reply::Full(status, headers, body) => {
                conn.write_all(&head(status, &headers, Some(body.len() as u64)))?;
                if with_body {
                    conn.write_all(&body)?;
                }
            }
            Reply::Short(headers, claimed, body) => {
                conn.write_all(&head(200, &headers, Some(claimed)))?;
                conn.write_all(&body)?;
            }
            Reply::Flood(headers, claimed, chunk) => {
                conn.write_all(&head(200, &headers, Some(claimed)))?;
                while !stop.load(Ordering::SeqCst) {
                    conn.write_all(&chunk)?;
                }
            }
            Reply::Endless(headers, chunk) => endless(&mut conn, &headers, &[], &chunk, stop)?,
            Reply::EndlessAfter(headers, first, chunk) => {
                endless(&mut conn, &headers, &first, &chunk, stop)?
            }
            Reply::Drip(headers, claimed, body) => {
                conn.write_all(&head(200, &headers, Some(claimed)))?;
                conn.write_all(&body)?;
                for _ in 0..1000 {
                    std::thread::sleep(Duration::from_millis(300));
                    conn.write_all(b" ")?;
                }
            }
            Reply::Stall(headers, claimed, body) => {
                conn.write_all(&head(200, &headers, Some(claimed)))?;
                conn.write_all(&body)?;
                wait_for_close(&mut conn);
            }
            Reply::Silent => wait_for_close(&mut conn),
            Reply::Stream(headers, len, mut body) => {
                conn.write_all(&head(200, &headers, Some(len)))?;
                std::io::copy(&mut body, &mut conn)?;
            }
        }
        conn.flush()
    })();
}

pub(crate) fn endless(
    conn: &mut TcpStream,
    headers: &Headers,
    first: &[u8],
    chunk: &[u8],
    stop: &AtomicBool,
) -> std::io::Result<()> {
    conn.write_all(&head(200, headers, None))?;
    let frame = |c: &[u8]| [format!("{:x}\r\n", c.len()).as_bytes(), c, b"\r\n"].concat();
    if !first.is_empty() {
        conn.write_all(&frame(first))?;
    }
    let framed = frame(chunk);
    while !stop.load(Ordering::SeqCst) {
        conn.write_all(&framed)?;
    }
    Ok(())
}

/// Hold the connection open, saying nothing, until the client closes it.
pub(crate) fn wait_for_close(conn: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    let until = Instant::now() + Duration::from_secs(120);
    while Instant::now() < until {
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}
