//! The HTTP listener's admin side through real sockets: the admin API
//! (listing, sending, kicking, opening listeners) and what guards it (the
//! token, the loopback rule, a reverse proxy's headers), metrics, the
//! console's login cookie, `status` against a live server and a dead port,
//! and HTTP connections that are slow, silent or many.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use crate::http::*;
use common::*;
use serde_json::{json, Value};
use switchboard::config::{ConnectionLimits, HttpSettings};
use switchboard::{Config, ServerLine};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test]
async fn the_admin_api_lists_sends_kicks_and_opens_listeners() {
    let (server, http_addr) = start(http_config()).await;
    let base = format!("http://{http_addr}");
    let client = http();
    let (mut alice, _) = join(server.text_addr()).await;
    alice.send_line("/nick alice").await.unwrap();
    alice.send_line("one").await.unwrap();
    sync(&mut alice).await;

    let stats: Value = json_of(client.get(format!("{base}/api/v1/stats"))).await;
    assert_eq!(stats["clients"]["current"], 1);
    assert_eq!(stats["rooms"], 1);
    assert!(stats["messages"]["in"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["listeners"].as_array().unwrap().len(), 3);

    let page: Value = json_of(client.get(format!("{base}/api/v1/clients?sort=name"))).await;
    assert_eq!(page["total"], 1);
    let alice_view = &page["clients"][0];
    assert_eq!(alice_view["name"], "alice");
    assert_eq!(alice_view["mode"], "text");
    assert_eq!(alice_view["rooms"], json!(["lobby"]));
    assert!(alice_view["bytes_in"].as_u64().unwrap() > 0);

    let rooms: Value = json_of(client.get(format!("{base}/api/v1/rooms"))).await;
    assert_eq!(rooms["rooms"][0]["name"], "lobby");
    let lobby: Value = json_of(client.get(format!("{base}/api/v1/rooms/lobby"))).await;
    assert_eq!(lobby["members"][0]["name"], "alice");
    let missing = client
        .get(format!("{base}/api/v1/rooms/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(error["error"]["code"], "no_such_room");

    // Send to the room, as text, and to alice, as bytes.
    let sent: Value = json_of(
        client
            .post(format!("{base}/api/v1/send"))
            .json(&json!({"room": "lobby", "text": "hello from the API"})),
    )
    .await;
    assert_eq!(sent["delivered"], 1);
    let (_, from, text) = expect_message(&mut alice).await;
    assert_eq!(
        (from.as_str(), text.as_str()),
        ("admin", "hello from the API")
    );
    let bad = client
        .post(format!("{base}/api/v1/send"))
        .json(&json!({"room": "lobby"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // Nobody may pass for the admin.
    alice.send_line("/nick Admin").await.unwrap();
    expect_line(
        &mut alice,
        "the refusal",
        |l| matches!(l, ServerLine::Error(e) if e.contains("reserved")),
    )
    .await;

    // Open a listener on any free port; a client connects there; close it.
    let opened = client
        .post(format!("{base}/api/v1/listeners"))
        .json(&json!({"mode": "text", "addr": "127.0.0.1:0", "room": "temp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 201);
    let opened: Value = opened.json().await.unwrap();
    let addr: SocketAddr = opened["addr"].as_str().unwrap().parse().unwrap();
    let (mut visitor, _) = join(addr).await;
    visitor.send_line("/who").await.unwrap();
    expect_line(
        &mut visitor,
        "the temp room",
        |l| matches!(l, ServerLine::Notice(n) if n.contains("#temp")),
    )
    .await;
    let taken = client
        .post(format!("{base}/api/v1/listeners"))
        .json(&json!({"addr": addr.to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), 409);
    assert_eq!(opened["auth"], "none");
    for (request, code) in [
        (json!({"auth": "required"}), "no_credentials"),
        (json!({"mode": "tls"}), "no_certificate"),
        (json!({"auth": "maybe"}), "bad_auth"),
    ] {
        let refused = client
            .post(format!("{base}/api/v1/listeners"))
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400, "{request}");
        let refused: Value = refused.json().await.unwrap();
        assert_eq!(refused["error"]["code"], code, "{request}");
    }
    let id = opened["id"].as_u64().unwrap();
    let closed = client
        .delete(format!("{base}/api/v1/listeners/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 200);
    let lines = read_to_end(&mut visitor).await;
    assert!(lines.last().unwrap().contains("listener"), "{lines:?}");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the closed listener still accepts"
    );
    let listeners: Value = client
        .get(format!("{base}/api/v1/listeners"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let from_config = listeners
        .as_array()
        .unwrap_or_else(|| panic!("{listeners}"))
        .iter()
        .find(|l| l["origin"] == "config")
        .unwrap_or_else(|| panic!("no listener from the configuration: {listeners}"))["id"]
        .as_u64()
        .unwrap();
    let config_listener = client
        .delete(format!("{base}/api/v1/listeners/{from_config}"))
        .send()
        .await
        .unwrap();
    assert_eq!(config_listener.status(), 409);

    // Kick alice with a reason.
    let id = alice_view["id"].as_u64().unwrap();
    let kicked = client
        .delete(format!("{base}/api/v1/clients/{id}"))
        .json(&json!({"reason": "enough"}))
        .send()
        .await
        .unwrap();
    assert_eq!(kicked.status(), 200);
    let lines = read_to_end(&mut alice).await;
    assert!(
        lines
            .last()
            .unwrap()
            .contains("kicked by the server's admin: enough"),
        "{lines:?}"
    );
    let gone = client
        .delete(format!("{base}/api/v1/clients/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);

    // Recorded once its connection has finished closing, which its peer
    // may see a moment before.
    let closed = within(
        "the kicked and the closed listener's clients among the recent disconnects",
        async {
            loop {
                let url = format!("{base}/api/v1/clients?state=closed");
                let closed: Value = json_of(client.get(url)).await;
                let codes: Vec<&str> = closed["clients"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|c| c["reason_code"].as_str())
                    .collect();
                if codes.contains(&"kicked") && codes.contains(&"listener_closed") {
                    return closed;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        },
    )
    .await;
    let codes: Vec<&str> = closed["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["reason_code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"kicked") && codes.contains(&"listener_closed"),
        "{codes:?}"
    );

    let openapi: Value = json_of(client.get(format!("{base}/api/v1/openapi.json"))).await;
    assert!(
        openapi["paths"]["/api/v1/clients/{id}"]["delete"].is_object(),
        "{openapi}"
    );
    server.stop().await;
}

/// A value the API takes one of a few of (a listing's state, sort and
/// order, a listener's mode and auth) is refused with its own code and the
/// values there are; the OpenAPI document lists them too.
#[tokio::test]
async fn a_value_that_is_not_one_of_the_choices_is_refused_naming_them() {
    let (server, http) = start(http_config()).await;
    let base = format!("http://{http}");
    let client = client_builder().build().unwrap();
    for (query, code, lists) in [
        ("sort=size", "bad_sort", "`messages_in`"),
        ("state=gone", "bad_state", "`closed`"),
        ("order=up", "bad_order", "`desc`"),
    ] {
        let response = client
            .get(format!("{base}/api/v1/clients?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let refused: Value = response.json().await.unwrap();
        assert_eq!(refused["error"]["code"], code, "{query}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains(lists), "{query}: {message}");
    }
    let refused: Value = json_of(
        client
            .post(format!("{base}/api/v1/listeners"))
            .json(&json!({"mode": "xml"})),
    )
    .await;
    assert_eq!(refused["error"]["code"], "bad_mode", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`raw+tls`"),
        "{refused}"
    );
    let sorted: Value = json_of(client.get(format!(
        "{base}/api/v1/clients?state=closed&sort=bytes_in&order=desc"
    )))
    .await;
    assert!(sorted["clients"].is_array(), "{sorted}");

    let openapi: Value = json_of(client.get(format!("{base}/api/v1/openapi.json"))).await;
    let schemas = &openapi["components"]["schemas"];
    assert_eq!(schemas["SortOrder"]["enum"], json!(["asc", "desc"]));
    assert_eq!(schemas["Auth"]["enum"], json!(["none", "required"]));
    // Every reference in the document leads somewhere.
    fn references(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(to)) = map.get("$ref") {
                    found.push(to.clone());
                }
                map.values().for_each(|v| references(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| references(v, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    references(&openapi, &mut found);
    assert!(found.len() > 20, "{found:?}");
    for to in found {
        let name = to.strip_prefix("#/components/schemas/").unwrap_or(&to);
        assert!(schemas[name].is_object(), "{to} leads nowhere");
    }
    server.stop().await;
}

#[tokio::test]
async fn metrics_count_connections_messages_and_disconnects_by_mode() {
    let (server, http_addr) = start(http_config()).await;
    let (mut text, _) = join(server.text_addr()).await;
    let mut browser = ws_connect(http_addr, "").await;
    ws_event(&mut browser).await;
    text.send_line("counted").await.unwrap();
    ws_expect(&mut browser, "the message", |e| e["type"] == "message").await;
    text.send_line("/quit").await.unwrap();
    read_to_end(&mut text).await;
    let metrics = within("metrics with the quit counted", async {
        loop {
            let metrics = metrics(http_addr).await;
            if metrics.contains("switchboard_disconnects_total{reason=\"quit\"} 1") {
                return metrics;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    for line in [
        "switchboard_clients{mode=\"ws\"} 1",
        "switchboard_connections_total{mode=\"text\"} 1",
        "switchboard_messages_received_total{mode=\"text\"} 1",
        "switchboard_messages_delivered_total{mode=\"ws\"}",
        "switchboard_http_requests_total{route=\"/ws\",status=\"101\"} 1",
        "# EOF",
    ] {
        assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
    }
    server.stop().await;
}

#[tokio::test]
async fn with_a_token_the_api_wants_it_and_slows_down_guessers() {
    let config = Config {
        http: HttpSettings {
            admin_token: Some(TOKEN.into()),
            admin_login_attempts: 3,
            ..http_config().http
        },
        ..http_config()
    };
    let (server, http_addr) = start(config).await;
    let client = http();
    // The console sends a browser without the cookie to the login page.
    let no_redirects = client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = no_redirects
        .get(format!("http://{http_addr}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/login");
    let url = format!("http://{http_addr}/api/v1/stats");
    assert_eq!(status_of(client.get(&url)).await, 401);
    assert_eq!(status_of(client.get(&url).bearer_auth(TOKEN)).await, 200);
    assert_eq!(
        status_of(
            client
                .get(format!("http://{http_addr}/metrics"))
                .bearer_auth(TOKEN)
        )
        .await,
        200
    );
    for _ in 0..3 {
        let wrong = client
            .get(&url)
            .bearer_auth("wrong-token-wrong-token")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
        let body: Value = wrong.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    // Past the limit, wrong tokens wait out the minute...
    let limited = client
        .get(&url)
        .bearer_auth("wrong-token-wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    // ...and the right one is never refused because of them: behind a
    // proxy, an attacker's guesses come from the admin's address too.
    assert_eq!(status_of(client.get(&url).bearer_auth(TOKEN)).await, 200);
    // /ws and /healthz stay open.
    assert_eq!(
        status_of(client.get(format!("http://{http_addr}/healthz"))).await,
        200
    );
    ws_connect(http_addr, "").await;
    server.stop().await;
}

#[tokio::test]
async fn the_console_login_keeps_the_token_in_a_strict_http_only_cookie() {
    let config = Config {
        http: HttpSettings {
            admin_token: Some(TOKEN.into()),
            ..http_config().http
        },
        ..http_config()
    };
    let (server, http_addr) = start(config).await;
    let client = client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = client
        .post(format!("http://{http_addr}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    let page = client
        .get(format!("http://{http_addr}/"))
        .header("cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    // The cookie is a session that ends, not the token.
    assert!(!cookie.contains(TOKEN), "{cookie}");
    assert!(cookie.contains("Max-Age=43200"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let stats = format!("http://{http_addr}/api/v1/stats");
    assert_eq!(
        status_of(client.get(&stats).header("cookie", pair)).await,
        200
    );
    // Logging out revokes it: the same cookie, replayed, opens nothing.
    let logout = client
        .post(format!("http://{http_addr}/logout"))
        .header("cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 303);
    assert_eq!(
        status_of(client.get(&stats).header("cookie", pair)).await,
        401
    );
    // A made-up cookie opens nothing either.
    let forged = format!("switchboard_admin={}", "ab".repeat(32));
    assert_eq!(
        status_of(client.get(&stats).header("cookie", forged)).await,
        401
    );
    let wrong = client
        .post(format!("http://{http_addr}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=not-the-token-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.headers()["location"], "/login?failed=1");
    server.stop().await;
}

#[tokio::test]
async fn without_a_token_the_admin_side_answers_only_locally() {
    let (server, http_addr) = start(http_config()).await;
    let client = http();
    let url = format!("http://{http_addr}/api/v1/stats");
    assert_eq!(status_of(client.get(&url)).await, 200);
    // A proxy forwarding the internet to a local server is not local.
    let forwarded = client
        .get(&url)
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 403);
    // A page on another site (or a DNS name rebound to 127.0.0.1) is not either.
    let rebound = client
        .get(&url)
        .header("host", "evil.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    let cross_site = client
        .get(&url)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    server.stop().await;
}

#[tokio::test]
async fn without_a_token_nothing_a_local_proxy_passes_on_reaches_the_admin() {
    let (server, http_addr) = start(http_config()).await;
    let client = http();
    let stats = format!("http://{http_addr}/api/v1/stats");
    let listeners = format!("http://{http_addr}/api/v1/listeners");
    // nginx with `proxy_set_header Host $host` and nothing else passes on
    // the Host its client chose, from 127.0.0.1: a browser opening the
    // server by its public address sends such a Host without forging it.
    for host in [
        "203.0.113.10",
        "203.0.113.10:8080",
        "[2001:db8::1]:80",
        "10.0.0.5",
    ] {
        let refused = client
            .get(&stats)
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "Host: {host}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "local_only", "{body}");
        let open = client
            .post(&listeners)
            .header("host", host)
            .json(&serde_json::json!({"spec": "127.0.0.1:0"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            open.status(),
            403,
            "POST /api/v1/listeners with Host: {host}"
        );
    }
    // A loopback Host passes through a proxy too: whatever header the
    // proxy adds gives it away (the documented block adds X-Forwarded-For).
    for header in [
        "x-forwarded-for",
        "x-real-ip",
        "forwarded",
        "via",
        "x-forwarded-proto",
    ] {
        let refused = client
            .get(&stats)
            .header("host", "127.0.0.1")
            .header(header, "203.0.113.9")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{header}");
    }
    // The live feed (all traffic readable) is refused the same way.
    let live = client
        .get(format!("http://{http_addr}/api/v1/live"))
        .header("host", "203.0.113.10")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 403);
    // What the admin's own tools send still works.
    for host in [
        "localhost",
        &http_addr.to_string(),
        &format!("localhost:{}", http_addr.port()),
    ] {
        let ok = client
            .get(&stats)
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "Host: {host}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_documented_nginx_block_forwards_the_client_address() {
    // Every nginx block in the README and docs/*.md says who the client is,
    // so that a server behind it without a token keeps its admin local; the
    // docs show at least one.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec![root.join("README.md")];
    let mut pages: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    docs.extend(pages);
    let mut found = 0;
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        // Every fenced block that configures an HTTP proxy.
        let blocks = text
            .split("```")
            .skip(1)
            .step_by(2)
            .filter(|block| block.contains("proxy_pass") && block.contains("location"));
        for block in blocks {
            found += 1;
            assert!(
                block.contains("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"),
                "{}: an nginx block without X-Forwarded-For:\n{block}",
                doc.display()
            );
        }
    }
    assert!(found > 0, "no nginx block in {docs:?}");
}

#[tokio::test]
async fn a_public_http_address_without_a_token_refuses_to_start() {
    // With a limit: a regression that starts serving fails, not hangs.
    let output = run(&["serve", "--listen", "127.0.0.1:0", "--http", "0.0.0.0:0"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--admin-token"), "{stderr}");
}

#[tokio::test]
async fn status_shows_a_live_server_and_fails_clearly_on_a_dead_port() {
    let mut server =
        BinaryServer::start(&["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"]).await;
    let http_addr = server.http();
    let (mut client, _) = join(server.addr(0)).await;
    client.send_line("/nick statler").await.unwrap();
    sync(&mut client).await;
    let status = |args: Vec<String>| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("status")
            .args(args)
            .env_remove("SWITCHBOARD_ADMIN_TOKEN")
            .env_remove("SWITCHBOARD_HTTP")
            .output()
            .await
            .unwrap()
    };
    let out = status(vec![http_addr.clone()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("clients   1 now"), "{text}");
    assert!(
        text.contains("LISTENERS") && text.contains("lobby"),
        "{text}"
    );
    let out = status(vec![http_addr.clone(), "--json".into()]).await;
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["stats"]["clients"]["current"], 1);

    // A port nothing listens on: non-zero, and a line saying so.
    let (_held, dead) = nothing_listens();
    let out = status(vec![dead.to_string()]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach switchboard"), "{stderr}");
    server.terminate();
    server.expect_log("shut down").await;
}

/// A `/ws` upgrade as nginx forwards it, for the client at `client`: the
/// answer's status.
async fn ws_status_forwarded_for(http_addr: SocketAddr, client: &str) -> (u16, Option<Ws>) {
    let mut request = format!("ws://{http_addr}/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", client.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => (101, Some(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            (response.status().as_u16(), None)
        }
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_is_counted_as_itself() {
    // nginx on this machine: every request from 127.0.0.1.
    let config = Config {
        http: HttpSettings {
            trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
            admin_token: Some(TOKEN.into()),
            admin_login_attempts: 2,
            ..http_config().http
        },
        limits: ConnectionLimits {
            max_connections_per_ip: Some(1),
            ..http_config().limits
        },
        ..http_config()
    };
    let (server, http_addr) = start(config).await;
    // One connection per address: the proxy's many clients are many addresses.
    let (first, _kept) = ws_status_forwarded_for(http_addr, "203.0.113.5").await;
    assert_eq!(first, 101);
    assert_eq!(
        ws_status_forwarded_for(http_addr, "203.0.113.5").await.0,
        503
    );
    assert_eq!(
        ws_status_forwarded_for(http_addr, "203.0.113.6").await.0,
        101
    );
    // A guesser locks out its own address, not the admin's.
    let client = http();
    let stats = format!("http://{http_addr}/api/v1/stats");
    for _ in 0..3 {
        client
            .get(&stats)
            .bearer_auth("wrong-token-wrong-token")
            .header("x-forwarded-for", "198.51.100.66")
            .send()
            .await
            .unwrap();
    }
    let guesser = client
        .get(&stats)
        .bearer_auth("wrong-token-wrong-token")
        .header("x-forwarded-for", "198.51.100.66")
        .send()
        .await
        .unwrap();
    assert_eq!(guesser.status(), 429);
    let admin = client
        .get(&stats)
        .bearer_auth("another-wrong-token")
        .header("x-forwarded-for", "203.0.113.10")
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 401, "another address is not locked out");
    server.stop().await;

    // Not trusted: a client's X-Forwarded-For is its own words, ignored.
    let config = Config {
        limits: ConnectionLimits {
            max_connections_per_ip: Some(1),
            ..http_config().limits
        },
        ..http_config()
    };
    let (server, http_addr) = start(config).await;
    let (first, _kept) = ws_status_forwarded_for(http_addr, "203.0.113.5").await;
    assert_eq!(first, 101);
    assert_eq!(
        ws_status_forwarded_for(http_addr, "203.0.113.6").await.0,
        503
    );
    server.stop().await;
}

/// Reads until the server closes the connection; what it said.
pub(crate) async fn until_closed(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    within(what, async {
        let mut said = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return said,
                Ok(n) => said.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
}

#[tokio::test]
async fn slow_or_silent_http_connections_are_closed_and_counted_like_clients() {
    let config = Config {
        http: HttpSettings {
            header_timeout: Duration::from_secs(1),
            ..http_config().http
        },
        limits: ConnectionLimits {
            max_connections_per_ip: Some(2),
            ..http_config().limits
        },
        ..http_config()
    };
    let (server, http_addr) = start(config).await;
    // A slowloris: headers a byte at a time, never finished; and a
    // connection that says nothing at all.
    let mut trickling = TcpStream::connect(http_addr).await.unwrap();
    trickling
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(http_addr).await.unwrap();
    // Together they hold this address's two connections: a TCP client from
    // it is refused, as a third would be.
    let mut third = TcpStream::connect(server.text_addr()).await.unwrap();
    let said = String::from_utf8_lossy(&until_closed(&mut third, "the refusal").await).into_owned();
    assert!(said.contains("too many connections"), "{said}");
    let mut refused = TcpStream::connect(http_addr).await.unwrap();
    refused
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&until_closed(&mut refused, "the 503").await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many connections"), "{answer}");
    // Both are closed once the header timeout has passed.
    until_closed(&mut trickling, "the slowloris to be closed").await;
    until_closed(&mut silent, "the silent connection to be closed").await;
    // Their slots are free again.
    assert_eq!(
        status_of(http().get(format!("http://{http_addr}/healthz"))).await,
        200
    );
    // A keep-alive connection that goes quiet is closed the same way.
    let mut idle = TcpStream::connect(http_addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer =
        String::from_utf8_lossy(&until_closed(&mut idle, "the idle keep-alive to be closed").await)
            .into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn one_address_cannot_take_every_pending_tls_handshake() {
    let server = BinaryServer::start(&[
        "--listen",
        "127.0.0.1:0",
        "--http",
        "https://127.0.0.1:0",
        "--tls-self-signed",
        "--max-connections-per-ip",
        "0",
    ])
    .await;
    let https: SocketAddr = server.listeners[1]
        .strip_prefix("https://")
        .unwrap()
        .parse()
        .unwrap();
    // 127.0.0.1 opens connections and never says hello: past its share
    // (a sixteenth of the 1,024 handshakes), the next is closed at once.
    let mut silent = Vec::new();
    for _ in 0..64 {
        silent.push(TcpStream::connect(https).await.unwrap());
    }
    let mut over = TcpStream::connect(https).await.unwrap();
    until_closed(
        &mut over,
        "the connection past the address's share to be closed",
    )
    .await;
    // Another address still gets through: a whole handshake and a request.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = socket.connect(https).await.unwrap();
    let tls = switchboard::ClientTls::insecure().unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls.rustls_config()));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = within(
        "the other address's handshake",
        connector.connect(name, stream),
    )
    .await
    .expect("the handshake completes");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    within("the answer", stream.read_to_end(&mut answer))
        .await
        .ok();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    drop(silent);
}
