//! What one client's session does, told as the hub sees it: counting,
//! watching, saying, arriving and saying hello, by what reaches the
//! other clients' queues.

use std::time::{Duration, SystemTime};

use super::tests::{connect, drain, hub};
use super::*;

fn room(name: &str) -> RoomName {
    RoomName::new(name).unwrap()
}

#[test]
fn what_a_client_sends_is_counted_and_makes_it_active() {
    let hub = hub();
    let a = connect(&hub, None);
    let before = hub.client(a.id()).unwrap();
    a.received(123);
    a.received(7);
    let after = hub.client(a.id()).unwrap();
    assert_eq!(after.bytes_in, before.bytes_in + 130);
    assert!(after.last_activity >= before.last_activity);
    assert!(after.last_activity > SystemTime::UNIX_EPOCH);
}

#[tokio::test]
async fn a_watched_client_is_shown_to_its_watcher_and_an_unwatched_one_is_not() {
    let hub = hub();
    let a = connect(&hub, Some("lobby"));
    let b = connect(&hub, Some("lobby"));
    let watcher = hub.watch(Watch::Client(a.id())).unwrap();
    a.say(None, Body::line("seen")).await.unwrap();
    b.say(None, Body::line("not watched")).await.unwrap();
    let seen = watcher.tap().take().items;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(&seen[0].body.bytes[..], b"seen");
    assert_eq!(seen[0].from_id, Some(a.id()));
    drop(watcher);
    a.say(None, Body::line("after")).await.unwrap();
}

#[tokio::test]
async fn a_client_says_to_a_room_it_names_only_if_it_is_in_it() {
    let hub = hub();
    let mut a = connect(&hub, Some("lobby"));
    a.join(room("ops")).unwrap();
    let b = connect(&hub, Some("lobby"));
    drain(&b);
    a.say(Some(&RoomName::lobby()), Body::line("to the lobby"))
        .await
        .unwrap();
    assert_eq!(
        drain(&b).len(),
        1,
        "the lobby, named, though ops is current"
    );
    assert_eq!(
        a.say(Some(&room("elsewhere")), Body::line("x")).await,
        Err(HubError::NotInRoom(room("elsewhere")))
    );
    let lonely = connect(&hub, None);
    assert_eq!(
        lonely.say(None, Body::line("x")).await,
        Err(HubError::NoRoom)
    );
}

#[tokio::test]
async fn a_sender_that_congests_a_receiver_is_counted_as_paused() {
    let hub = Hub::new(HubSettings {
        queue: QueueLimits {
            soft: 10,
            hard: 1 << 20,
            pause: Duration::from_millis(1),
        },
        ..super::tests::settings()
    });
    let a = connect(&hub, Some("lobby"));
    let _b = connect(&hub, Some("lobby"));
    assert_eq!(hub.flow_control_pauses(), 0);
    a.say(None, Body::line("nothing much")).await.unwrap();
    assert_eq!(hub.flow_control_pauses(), 1);
    let quiet = connect(&hub, Some("quiet"));
    quiet.say(None, Body::line("to nobody")).await.unwrap();
    assert_eq!(hub.flow_control_pauses(), 1, "nobody was congested");
}

#[tokio::test]
async fn a_direct_message_reaches_its_recipient_alone() {
    let hub = hub();
    let a = connect(&hub, Some("lobby"));
    let mut b = connect(&hub, Some("lobby"));
    let c = connect(&hub, Some("lobby"));
    b.rename(Name::new("bob").unwrap()).await.unwrap();
    drain(&a);
    drain(&b);
    drain(&c);
    let (a_in, b_out) = (
        hub.client(a.id()).unwrap().messages_in,
        hub.client(b.id()).unwrap().messages_out,
    );
    a.direct(&Name::new("BOB").unwrap(), Body::line("psst"))
        .await
        .unwrap();
    let got = drain(&b);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("Direct") && got[0].contains("psst"),
        "{got:?}"
    );
    assert!(drain(&c).is_empty() && drain(&a).is_empty());
    assert_eq!(
        a.direct(&Name::new("nobody").unwrap(), Body::line("?"))
            .await,
        Err(HubError::NoSuchClient(Name::new("nobody").unwrap()))
    );
    assert_eq!(hub.client(a.id()).unwrap().messages_in, a_in + 2);
    assert_eq!(hub.client(b.id()).unwrap().messages_out, b_out + 1);
}

#[test]
fn joining_answers_how_many_are_in_the_room_now() {
    let hub = hub();
    let mut a = connect(&hub, None);
    let mut b = connect(&hub, None);
    assert_eq!(a.join(room("ops")), Ok(1));
    assert_eq!(b.join(room("ops")), Ok(2));
    // Joined already: only made current, and still two.
    b.join(room("dev")).unwrap();
    assert_eq!(b.join(room("ops")), Ok(2));
    assert_eq!(b.current_room(), Some(&room("ops")));
}

#[tokio::test]
async fn a_quiet_arrival_is_told_only_when_announced_and_only_once() {
    let hub = hub();
    let a = connect(&hub, Some("lobby"));
    drain(&a);
    let mut b = connect(&hub, None);
    assert!(!b.arriving());
    assert_eq!(b.arrive_quietly(RoomName::lobby()), Ok(2));
    assert!(b.arriving());
    assert!(drain(&a).is_empty(), "not told yet");
    b.announce_arrival();
    assert!(!b.arriving());
    let told = drain(&a);
    assert_eq!(told.len(), 1);
    assert!(told[0].starts_with("Joined"), "{told:?}");
    b.announce_arrival();
    assert!(drain(&a).is_empty(), "told once");

    // A client already in a room arrives in another announced at once.
    let mut c = connect(&hub, Some("ops"));
    assert_eq!(c.arrive_quietly(RoomName::lobby()), Ok(3));
    assert!(!c.arriving());
    let told = drain(&a);
    assert_eq!(told.len(), 1, "{told:?}");
}

#[tokio::test]
async fn a_hello_as_it_arrives_names_it_and_takes_it_where_it_asks_told_once() {
    let hub = hub();
    let ops_member = connect(&hub, Some("ops"));
    let lobby_member = connect(&hub, Some("lobby"));
    drain(&ops_member);
    drain(&lobby_member);
    let mut b = connect(&hub, None);
    b.arrive_quietly(RoomName::lobby()).unwrap();
    let (name, here, members) = b
        .hello(Some(Name::new("bea").unwrap()), Some(room("ops")))
        .await
        .unwrap();
    assert_eq!((name.as_str(), here.as_str(), members), ("bea", "ops", 2));
    assert!(
        drain(&lobby_member).is_empty(),
        "the lobby never heard of it"
    );
    let told = drain(&ops_member);
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].starts_with("Joined") && told[0].contains("bea"),
        "{told:?}"
    );
    assert!(!b.arriving());

    // A hello that keeps its name and room: announced where it is.
    let mut c = connect(&hub, None);
    c.arrive_quietly(RoomName::lobby()).unwrap();
    let own = c.name().clone();
    let (name, here, members) = c.hello(Some(own.clone()), None).await.unwrap();
    assert_eq!((name, here.as_str(), members), (own, "lobby", 2));
    let told = drain(&lobby_member);
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].starts_with("Joined"), "{told:?}");

    // Later, a hello is a rename and a join; without a room it stays.
    let (_, here, members) = c.hello(Some(Name::new("cy").unwrap()), None).await.unwrap();
    assert_eq!((here.as_str(), members), ("lobby", 2));
    assert_eq!(c.name().as_str(), "cy");
    let (_, here, _) = c.hello(None, Some(room("ops"))).await.unwrap();
    assert_eq!(here.as_str(), "ops");
}
