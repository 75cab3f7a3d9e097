//! A minimal TDS 7.4 server, written here for the SQL Server source's tests: SQL Server itself cannot
//! run on this machine. It speaks what tiberius and the source need and no more — PRELOGIN (no
//! encryption), LOGIN7 (SQL authentication), SQL batches answered with COLMETADATA, ROW/NBCROW and
//! DONE tokens in 4096-byte packets — over canned tables, and answers
//! `sp_describe_first_result_set` with the columns SQL Server documents. For incremental loads it
//! evaluates the source's `WHERE [wm] IS NOT NULL AND [wm] > …` itself, so watermarks are really
//! applied; it is only as faithful to SQL Server as this file.

pub(crate) mod value;

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub(crate) use value::{Ty, Val};

const PACKET: usize = 4096;
const HEADER: usize = 8;
const SQL_BATCH: u8 = 0x01;
const REPLY: u8 = 0x04;
const LOGIN7: u8 = 0x10;
const PRELOGIN: u8 = 0x12;

/// Rows and their columns.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    pub(crate) columns: Vec<(String, Ty)>,
    pub(crate) rows: Vec<Vec<Val>>,
}

/// What a query (the manifest's text) gets.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    Rows(Table),
    /// A server error, e.g. 229 (permission denied).
    Error {
        code: u32,
        message: String,
    },
}

/// What the server knows and saw.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) password: String,
    pub(crate) replies: HashMap<String, Reply>,
    /// Every SQL batch received, in order.
    pub(crate) batches: Vec<String>,
    /// Logins attempted.
    pub(crate) logins: usize,
    /// The next data query breaks the connection after this many rows.
    pub(crate) break_after_rows: Option<usize>,
}

/// The server, on 127.0.0.1; stops when dropped.
#[derive(Debug)]
pub(crate) struct Fixture {
    pub(crate) port: u16,
    pub(crate) state: Arc<Mutex<State>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Fixture {
    pub(crate) async fn start(password: &str) -> Fixture {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State { password: password.into(), ..State::default() }));
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(socket, state).await;
                });
            }
        });
        Fixture { port, state, accept }
    }

    pub(crate) fn reply(&self, query: &str, reply: Reply) {
        self.state.lock().unwrap().replies.insert(query.into(), reply);
    }

    /// Changes the rows of `query`'s table.
    pub(crate) fn rows(&self, query: &str, change: impl FnOnce(&mut Vec<Vec<Val>>)) {
        let mut state = self.state.lock().unwrap();
        match state.replies.get_mut(query) {
            Some(Reply::Rows(t)) => change(&mut t.rows),
            _ => panic!("no table for {query}"),
        }
    }

    pub(crate) fn batches(&self) -> Vec<String> {
        self.state.lock().unwrap().batches.clone()
    }
}

/// One client connection: pre-login, login, then SQL batches until the client leaves.
async fn serve(mut socket: TcpStream, state: Arc<Mutex<State>>) -> io::Result<()> {
    let mut out = Writer { id: 1, buf: Vec::new() };
    let Some((PRELOGIN, _)) = read_message(&mut socket).await? else { return Ok(()) };
    out.buf.extend(prelogin());
    out.end(&mut socket).await?;

    let Some((LOGIN7, login)) = read_message(&mut socket).await? else { return Ok(()) };
    let (user, password, database) = parse_login(&login);
    let expected = {
        let mut s = state.lock().unwrap();
        s.logins += 1;
        s.password.clone()
    };
    if password != expected {
        error(&mut out.buf, 18456, 14, &format!("Login failed for user '{user}'."));
        done(&mut out.buf, 0xFD, 0x0002, 0, 0);
        return out.end(&mut socket).await;
    }
    env_change(&mut out.buf, 1, &database, "master");
    env_change(&mut out.buf, 4, "4096", "4096");
    login_ack(&mut out.buf);
    done(&mut out.buf, 0xFD, 0, 0, 0);
    out.end(&mut socket).await?;

    while let Some((ty, payload)) = read_message(&mut socket).await? {
        if ty != SQL_BATCH {
            error(&mut out.buf, 0, 16, &format!("the fixture does not handle packet type {ty:#x}"));
            done(&mut out.buf, 0xFD, 0x0002, 0, 0);
            out.end(&mut socket).await?;
            continue;
        }
        let sql = batch_text(&payload);
        state.lock().unwrap().batches.push(sql.clone());
        if !answer(&mut socket, &mut out, &state, &sql).await? {
            return Ok(()); // Broken on purpose.
        }
    }
    Ok(())
}

/// Answers one batch; `false` when the connection was broken on purpose.
async fn answer(
    socket: &mut TcpStream,
    out: &mut Writer,
    state: &Mutex<State>,
    sql: &str,
) -> io::Result<bool> {
    if let Some(inner) = sql.strip_prefix("EXEC sp_describe_first_result_set @tsql = N'") {
        let query = inner.strip_suffix('\'').unwrap_or(inner).replace("''", "'");
        match lookup(state, &query) {
            Reply::Rows(table) => {
                let described = value::describe(&table.columns);
                col_metadata(&mut out.buf, &described.columns);
                for row in &described.rows {
                    row_token(&mut out.buf, &described.columns, row, false);
                }
                // A procedure's result ends as SQL Server ends it: DONEINPROC, RETURNSTATUS, DONEPROC.
                done(&mut out.buf, 0xFF, 0x0010, 0xC1, described.rows.len() as u64);
                out.buf.push(0x79);
                out.buf.extend(0u32.to_le_bytes());
                done(&mut out.buf, 0xFE, 0, 0xE0, 0);
            }
            Reply::Error { code, message } => {
                error(&mut out.buf, code, 16, &message);
                done(&mut out.buf, 0xFD, 0x0002, 0, 0);
            }
        }
        out.end(socket).await?;
        return Ok(true);
    }
    let load = value::Load::parse(sql);
    let table = match lookup(state, &load.query) {
        Reply::Rows(table) => table,
        Reply::Error { code, message } => {
            error(&mut out.buf, code, 16, &message);
            done(&mut out.buf, 0xFD, 0x0002, 0, 0);
            out.end(socket).await?;
            return Ok(true);
        }
    };
    let selected = load.select(&table);
    let break_after = state.lock().unwrap().break_after_rows.take();
    col_metadata(&mut out.buf, &table.columns);
    for (n, row) in selected.iter().enumerate() {
        if break_after == Some(n) {
            out.flush_full(socket).await?;
            return Ok(false);
        }
        // Rows with NULLs alternate between NBCROW and ROW, as SQL Server chooses either.
        let nbc = n.is_multiple_of(2) && row.contains(&Val::Null);
        row_token(&mut out.buf, &table.columns, row, nbc);
        out.flush_full(socket).await?;
    }
    done(&mut out.buf, 0xFD, 0x0010, 0xC1, selected.len() as u64);
    out.end(socket).await?;
    Ok(true)
}

fn lookup(state: &Mutex<State>, query: &str) -> Reply {
    state
        .lock()
        .unwrap()
        .replies
        .get(query)
        .cloned()
        .unwrap_or_else(|| Reply::Error { code: 208, message: format!("Invalid object name in '{query}'.") })
}

/// Reads one message (packets up to the one marked end-of-message); `None` at a clean end.
async fn read_message(socket: &mut TcpStream) -> io::Result<Option<(u8, Vec<u8>)>> {
    let (mut ty, mut payload) = (None, Vec::new());
    loop {
        let mut header = [0u8; HEADER];
        match socket.read_exact(&mut header).await {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && ty.is_none() => return Ok(None),
            other => other?,
        };
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        assert!((HEADER..=PACKET).contains(&len), "packet length {len}");
        let start = payload.len();
        payload.resize(start + len - HEADER, 0);
        socket.read_exact(&mut payload[start..]).await?;
        let ty = *ty.get_or_insert(header[0]);
        if header[1] & 0x01 != 0 {
            return Ok(Some((ty, payload)));
        }
    }
}

/// A reply in the making, sent as packets of at most 4096 bytes.
struct Writer {
    id: u8,
    buf: Vec<u8>,
}

impl Writer {
    async fn packet(&mut self, socket: &mut TcpStream, len: usize, last: bool) -> io::Result<()> {
        let mut packet = Vec::with_capacity(HEADER + len);
        packet.push(REPLY);
        packet.push(u8::from(last));
        packet.extend(((HEADER + len) as u16).to_be_bytes());
        packet.extend([0, 0x33, self.id, 0]);
        packet.extend(self.buf.drain(..len));
        self.id = self.id.wrapping_add(1);
        socket.write_all(&packet).await
    }

    /// Sends every full packet, keeping the rest (so the last packet is never empty).
    async fn flush_full(&mut self, socket: &mut TcpStream) -> io::Result<()> {
        while self.buf.len() > PACKET - HEADER {
            self.packet(socket, PACKET - HEADER, false).await?;
        }
        Ok(())
    }

    /// Sends the rest and marks the end of the message.
    async fn end(&mut self, socket: &mut TcpStream) -> io::Result<()> {
        self.flush_full(socket).await?;
        let len = self.buf.len();
        self.packet(socket, len, true).await
    }
}

fn prelogin() -> Vec<u8> {
    // Option table (token, offset, length), then the data: version, encryption NOT_SUP (2),
    // no instance, no thread id, no MARS.
    let options: [(u8, &[u8]); 5] =
        [(0x00, &[16, 0, 0x10, 0x00, 0, 0]), (0x01, &[2]), (0x02, &[0]), (0x03, &[]), (0x04, &[0])];
    let mut head = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    let mut offset = options.len() * 5 + 1;
    for (token, value) in options {
        head.push(token);
        head.extend((offset as u16).to_be_bytes());
        head.extend((value.len() as u16).to_be_bytes());
        data.extend(value);
        offset += value.len();
    }
    head.push(0xFF);
    head.extend(data);
    head
}

/// User, password and database of a LOGIN7 record.
fn parse_login(login: &[u8]) -> (String, String, String) {
    let field = |at: usize| {
        let offset = usize::from(u16::from_le_bytes([login[at], login[at + 1]]));
        let chars = usize::from(u16::from_le_bytes([login[at + 2], login[at + 3]]));
        login[offset..offset + chars * 2].to_vec()
    };
    let text = |bytes: Vec<u8>| {
        String::from_utf16(&bytes.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect::<Vec<_>>())
            .unwrap()
    };
    // The password is sent with each byte's nibbles swapped and XORed with 0xA5.
    let password = field(44).into_iter().map(|b| (b ^ 0xA5).rotate_left(4)).collect();
    (text(field(40)), text(password), text(field(68)))
}

/// The SQL text of a batch, after its ALL_HEADERS.
fn batch_text(payload: &[u8]) -> String {
    let skip = u32::from_le_bytes(payload[..4].try_into().unwrap()) as usize;
    let units = payload[skip..].chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect::<Vec<_>>();
    String::from_utf16(&units).unwrap()
}

pub(crate) fn utf16(buf: &mut Vec<u8>, s: &str) {
    for unit in s.encode_utf16() {
        buf.extend(unit.to_le_bytes());
    }
}

fn b_varchar(buf: &mut Vec<u8>, s: &str) {
    buf.push(s.encode_utf16().count() as u8);
    utf16(buf, s);
}

fn us_varchar(buf: &mut Vec<u8>, s: &str) {
    buf.extend((s.encode_utf16().count() as u16).to_le_bytes());
    utf16(buf, s);
}

/// A token whose body follows a 2-byte length.
fn sized(buf: &mut Vec<u8>, token: u8, body: Vec<u8>) {
    buf.push(token);
    buf.extend((body.len() as u16).to_le_bytes());
    buf.extend(body);
}

fn error(buf: &mut Vec<u8>, code: u32, class: u8, message: &str) {
    let mut body = Vec::new();
    body.extend(code.to_le_bytes());
    body.push(1); // state
    body.push(class);
    us_varchar(&mut body, message);
    b_varchar(&mut body, "fixture");
    b_varchar(&mut body, "");
    body.extend(1u32.to_le_bytes());
    sized(buf, 0xAA, body);
}

fn env_change(buf: &mut Vec<u8>, ty: u8, new: &str, old: &str) {
    let mut body = vec![ty];
    b_varchar(&mut body, new);
    b_varchar(&mut body, old);
    sized(buf, 0xE3, body);
}

fn login_ack(buf: &mut Vec<u8>) {
    let mut body = vec![1]; // SQL interface
    body.extend(0x7400_0004u32.to_be_bytes()); // TDS 7.4
    b_varchar(&mut body, "Microsoft SQL Server");
    body.extend([16, 0, 0x10, 0x00]);
    sized(buf, 0xAD, body);
}

/// DONE (0xFD), DONEPROC (0xFE) or DONEINPROC (0xFF).
fn done(buf: &mut Vec<u8>, token: u8, status: u16, command: u16, rows: u64) {
    buf.push(token);
    buf.extend(status.to_le_bytes());
    buf.extend(command.to_le_bytes());
    buf.extend(rows.to_le_bytes());
}

/// COLMETADATA.
fn col_metadata(buf: &mut Vec<u8>, columns: &[(String, Ty)]) {
    buf.push(0x81);
    buf.extend((columns.len() as u16).to_le_bytes());
    for (name, ty) in columns {
        buf.extend(0u32.to_le_bytes()); // user type
        buf.extend(1u16.to_le_bytes()); // flags: nullable
        ty.type_info(buf);
        b_varchar(buf, name);
    }
}

/// ROW, or NBCROW (a null bitmap, then only the values that are not null).
fn row_token(buf: &mut Vec<u8>, columns: &[(String, Ty)], row: &[Val], nbc: bool) {
    assert_eq!(columns.len(), row.len());
    if nbc {
        buf.push(0xD2);
        let mut bitmap = vec![0u8; columns.len().div_ceil(8)];
        for (i, v) in row.iter().enumerate() {
            if *v == Val::Null {
                bitmap[i / 8] |= 1 << (i % 8);
            }
        }
        buf.extend(bitmap);
    } else {
        buf.push(0xD1);
    }
    for ((_, ty), v) in columns.iter().zip(row) {
        if !(nbc && *v == Val::Null) {
            ty.value(buf, v);
        }
    }
}
