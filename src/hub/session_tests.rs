//! What one client's session does, told as the hub sees it: counting,
//! watching, saying, arriving and saying hello, by what reaches the
//! other clients' queues.

use std::time::{Duration, SystemTime};

use super::tests::{connect, drain, hub, DEBUG};
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

/// A client's list of its rooms is memory it holds all its life: one
/// room's entry for a client in one room (a `Vec`'s first push makes
/// room for four, 96 bytes more for every client), one more for each
/// room joined.
#[test]
fn a_client_holds_room_for_the_rooms_it_is_in_only() {
    let hub = hub();
    let mut a = connect(&hub, None);
    a.join(room("ops")).unwrap();
    assert_eq!(a.rooms_capacity(), 1);
    a.join(room("dev")).unwrap();
    assert_eq!(a.rooms_capacity(), 2);
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

#[tokio::test]
async fn a_direct_message_to_a_congested_client_is_counted_as_a_pause() {
    let hub = Hub::new(HubSettings {
        queue: QueueLimits {
            soft: 10,
            hard: 1 << 20,
            pause: Duration::from_millis(1),
        },
        ..super::tests::settings()
    });
    let a = connect(&hub, None);
    let mut b = connect(&hub, None);
    b.rename(Name::new("bob").unwrap()).await.unwrap();
    a.direct(&Name::new("bob").unwrap(), Body::line("short"))
        .await
        .unwrap();
    assert_eq!(hub.flow_control_pauses(), 1, "over 10 bytes: congested");
    drain(&b);
    let roomy = Hub::new(super::tests::settings());
    let c = connect(&roomy, None);
    let mut d = connect(&roomy, None);
    d.rename(Name::new("dee").unwrap()).await.unwrap();
    c.direct(&Name::new("dee").unwrap(), Body::line("short"))
        .await
        .unwrap();
    assert_eq!(roomy.flow_control_pauses(), 0);
}

fn keeping(count: usize) -> Hub {
    let hub = hub();
    hub.set_history_rules(HistoryRules {
        max_messages: count,
        ..HistoryRules::off()
    });
    hub
}

/// The texts of the replayed messages among `lines`, and the end marks.
fn replayed(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|line| line.starts_with("Replayed") || line.starts_with("HistoryEnd"))
        .map(|line| match line.split_once("bytes: b\"") {
            Some((_, rest)) => rest.split('"').next().unwrap().to_owned(),
            None => "end".to_owned(),
        })
        .collect()
}

#[tokio::test]
async fn a_client_shown_history_on_join_sees_the_last_messages_then_the_end() {
    let hub = keeping(10);
    let a = connect(&hub, Some("ops"));
    for text in ["one", "two", "three"] {
        a.say(None, Body::line(text)).await.unwrap();
    }
    let mut b = connect(&hub, None);
    b.show_history_on_join(2);
    assert_eq!(b.join(room("ops")), Ok(2));
    assert_eq!(replayed(&drain(&b)), ["two", "three", "end"]);
    // Without it: nothing.
    let mut c = connect(&hub, None);
    c.join(room("ops")).unwrap();
    assert!(replayed(&drain(&c)).is_empty());
}

#[tokio::test]
async fn a_resuming_client_joins_with_what_it_missed_and_is_counted_in() {
    let hub = keeping(10);
    let a = connect(&hub, Some("ops"));
    let _b = connect(&hub, Some("ops"));
    a.say(None, Body::line("seen")).await.unwrap();
    let seen = hub.room_history(&room("ops"), None, None, 1).kept[0].offset;
    a.say(None, Body::line("missed")).await.unwrap();
    let mut c = connect(&hub, None);
    assert_eq!(c.join_since(room("ops"), seen).await, Ok(3));
    assert_eq!(replayed(&drain(&c)), ["missed"]);
    // Resumed again, in it already, from the last it has: nothing twice.
    let missed = hub.room_history(&room("ops"), None, None, 1).kept[0].offset;
    assert_eq!(c.join_since(room("ops"), missed).await, Ok(3));
    assert!(replayed(&drain(&c)).is_empty());

    // Back in its listener's room as it reconnects: what came before it
    // arrived, from where it was.
    let mut d = connect(&hub, Some("ops"));
    a.say(None, Body::line("live")).await.unwrap();
    drain(&d);
    assert_eq!(d.join_since(room("ops"), seen).await, Ok(4));
    assert_eq!(replayed(&drain(&d)), ["missed"]);
}

/// A user kept out of every room but the lobby.
#[derive(Debug)]
struct LobbyOnly;

impl Access for LobbyOnly {
    fn may_join(&self, room: &RoomName) -> Result<(), String> {
        match room.as_str() {
            "lobby" => Ok(()),
            other => Err(format!("you may not join #{other}")),
        }
    }
    fn may_send(&self, _: &RoomName) -> Result<(), String> {
        Ok(())
    }
    fn may_direct(&self, _: &Name) -> Result<(), String> {
        Ok(())
    }
}

#[tokio::test]
async fn a_user_says_hello_by_its_own_name_and_a_refused_room_leaves_it_in_its_listeners() {
    let hub = hub();
    let witness = connect(&hub, Some("lobby"));
    drain(&witness);
    let mut user = connect(&hub, None);
    user.log_in(Some(Name::new("uma").unwrap()), Box::new(LobbyOnly))
        .await
        .unwrap();
    user.arrive_quietly(RoomName::lobby()).unwrap();
    // Its own name, which it may not change: no rename, no refusal.
    let refused = user
        .hello(Some(Name::new("uma").unwrap()), Some(room("ops")))
        .await;
    assert!(
        matches!(refused, Err(HubError::Forbidden(_))),
        "{refused:?}"
    );
    // Back in its listener's room, announced there.
    assert_eq!(user.current_room(), Some(&RoomName::lobby()));
    let told = drain(&witness);
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].starts_with("Joined") && told[0].contains("uma"),
        "{told:?}"
    );

    // A hello by its own name where it may go: fine, though it may not
    // rename itself.
    let mut other = connect(&hub, None);
    other
        .log_in(Some(Name::new("ulf").unwrap()), Box::new(LobbyOnly))
        .await
        .unwrap();
    other.arrive_quietly(RoomName::lobby()).unwrap();
    let hello = other.hello(Some(Name::new("ulf").unwrap()), None).await;
    assert_eq!(hello, Ok((Name::new("ulf").unwrap(), RoomName::lobby(), 3)));
    drain(&witness);

    // Joining, or resuming, a room it may not enter: refused.
    assert!(matches!(
        user.join(room("ops")),
        Err(HubError::Forbidden(_))
    ));
    let since = Offset { epoch: 1, seq: 1 };
    assert!(matches!(
        user.join_since(room("ops"), since).await,
        Err(HubError::Forbidden(_))
    ));

    // Later (arrived already), a refused room changes nothing.
    let refused = user.hello(None, Some(room("ops"))).await;
    assert!(
        matches!(refused, Err(HubError::Forbidden(_))),
        "{refused:?}"
    );
    assert!(drain(&witness).is_empty());
    assert_eq!(user.current_room(), Some(&RoomName::lobby()));
}

#[tokio::test]
async fn a_hello_shows_the_history_of_where_it_goes_once() {
    let hub = keeping(10);
    let talker = connect(&hub, Some("lobby"));
    talker.say(None, Body::line("in the lobby")).await.unwrap();
    let mut ops = connect(&hub, Some("ops"));
    ops.say(None, Body::line("in ops")).await.unwrap();

    // Shown the lobby's as it arrives; a hello that keeps it there does
    // not show it again.
    let mut stays = connect(&hub, None);
    stays.show_history_on_join(5);
    stays.arrive_quietly(RoomName::lobby()).unwrap();
    assert_eq!(replayed(&drain(&stays)), ["in the lobby", "end"]);
    stays.hello(None, None).await.unwrap();
    assert!(replayed(&drain(&stays)).is_empty());

    // A hello to another room as it arrives: that room's.
    let mut goes = connect(&hub, None);
    goes.show_history_on_join(5);
    goes.arrive_quietly(RoomName::lobby()).unwrap();
    drain(&goes);
    goes.hello(None, Some(room("ops"))).await.unwrap();
    assert_eq!(replayed(&drain(&goes)), ["in ops", "end"]);

    // Later, a hello to a room is a join: that room's too.
    stays.hello(None, Some(room("ops"))).await.unwrap();
    assert_eq!(replayed(&drain(&stays)), ["in ops", "end"]);
    ops.leave(&room("ops")).unwrap();
}

/// A backplane that keeps what the hub tells the other nodes.
#[derive(Debug)]
struct RecordsChanges {
    node: NodeName,
    changes: std::sync::Mutex<Vec<Change>>,
}

impl Backplane for RecordsChanges {
    fn node(&self) -> Option<&NodeName> {
        Some(&self.node)
    }
    fn publish(&self, _: &RoomName, _: &Name, _: ClientId, _: &[Body]) {}
    fn direct(&self, _: &RemoteClient, _: &Name, _: &Name, _: ClientId, _: &Body) {}
    fn changed(&self, change: Change) {
        self.changes.lock().unwrap().push(change);
    }
    fn claim(&self, _: ClientId, _: &Name) -> Claim {
        Box::pin(std::future::ready(Ok(())))
    }
    fn unclaim(&self, _: ClientId, _: &Name) {}
    fn replace_device(&self, _: &RemoteClient, _: &Name, _: DeviceProof) {}
    fn reserve_device_names(&self, _: &str) {}
}

#[test]
fn other_nodes_hear_who_joins_first_and_leaves_last_and_count_in_the_members() {
    let hub = hub();
    let backplane = Arc::new(RecordsChanges {
        node: "a".into(),
        changes: Default::default(),
    });
    hub.set_backplane(backplane.clone());
    let node: NodeName = "b".into();
    let (id, bob) = (ClientId::new(7), Name::new("bob").unwrap());
    far_member(&hub, &node, id, &bob, room("ops"));
    let mut a = connect(&hub, None);
    let mut c = connect(&hub, None);
    // Bob, on node b, counts.
    assert_eq!(a.join(room("ops")), Ok(2));
    assert_eq!(c.join(room("ops")), Ok(3));
    c.leave(&room("ops")).unwrap();
    a.leave(&room("ops")).unwrap();
    let told: Vec<(bool, bool)> = backplane
        .changes
        .lock()
        .unwrap()
        .iter()
        .filter_map(|change| match change {
            Change::Joined { room, first, .. } if room.as_str() == "ops" => Some((true, *first)),
            Change::Left { room, last, .. } if room.as_str() == "ops" => Some((false, *last)),
            _ => None,
        })
        .collect();
    // a joined first here, c second; c left with a still in, a last.
    assert_eq!(
        told,
        [(true, true), (true, false), (false, false), (false, true)]
    );
}

fn announcing(max_members: usize) -> Hub {
    Hub::new(HubSettings {
        announce_max_members: max_members,
        ..super::tests::settings()
    })
}

fn notices(lines: &[String]) -> usize {
    lines
        .iter()
        .filter(|line| {
            line.starts_with("Joined") || line.starts_with("Left") || line.starts_with("Renamed")
        })
        .count()
}

#[tokio::test]
async fn notices_go_to_rooms_up_to_the_announce_limit_counting_other_nodes() {
    // Three members at most: the third's arrival is told, a fourth's not.
    let hub = announcing(3);
    let a = connect(&hub, Some("ops"));
    let _b = connect(&hub, Some("ops"));
    drain(&a);
    let mut c = connect(&hub, Some("ops"));
    assert_eq!(notices(&drain(&a)), 1, "three members: told");
    c.rename(Name::new("cleo").unwrap()).await.unwrap();
    assert_eq!(notices(&drain(&a)), 1, "a rename in a room of three: told");
    let mut d = connect(&hub, Some("ops"));
    assert_eq!(notices(&drain(&a)), 0, "four members: not told");
    d.rename(Name::new("dina").unwrap()).await.unwrap();
    assert_eq!(notices(&drain(&a)), 0, "a room of four: no rename notice");
    d.leave(&room("ops")).unwrap();
    assert_eq!(notices(&drain(&a)), 1, "three left: told");

    // 0: never.
    let hub = announcing(0);
    let a = connect(&hub, Some("ops"));
    let mut b = connect(&hub, Some("ops"));
    b.rename(Name::new("bo").unwrap()).await.unwrap();
    drop(b);
    assert_eq!(notices(&drain(&a)), 0);

    // Members on other nodes count: three here and one there are four.
    let hub = announcing(3);
    let node = node_b_beside(&hub);
    let (id, x) = (ClientId::new(7), Name::new("x").unwrap());
    far_member(&hub, &node, id, &x, room("ops"));
    let a = connect(&hub, Some("ops"));
    let _b = connect(&hub, Some("ops"));
    drain(&a);
    let mut c = connect(&hub, Some("ops"));
    c.rename(Name::new("cy").unwrap()).await.unwrap();
    assert_eq!(notices(&drain(&a)), 0, "3 here and 1 there");
    // And in listings: who counts them, rooms lists theirs.
    let (_, who) = a.who(Some(&room("ops")), None).unwrap();
    assert_eq!(who.total, 4);
    let (id, y) = (ClientId::new(8), Name::new("y").unwrap());
    far_member(&hub, &node, id, &y, room("far"));
    let listed: Vec<String> = a
        .rooms(None)
        .items
        .iter()
        .map(|r| r.name.to_string())
        .collect();
    assert!(listed.contains(&"far".to_owned()), "{listed:?}");
}

#[tokio::test]
async fn a_rename_that_congests_a_room_member_makes_the_renamer_wait() {
    let hub = Hub::new(HubSettings {
        queue: QueueLimits {
            soft: 10,
            hard: 1 << 20,
            pause: Duration::from_secs(60),
        },
        ..super::tests::settings()
    });
    let mut a = connect(&hub, Some("ops"));
    let b = connect(&hub, Some("ops"));
    drain(&b);
    a.rename(Name::new("a-long-name").unwrap()).await.unwrap();
    let wait = Box::pin(a.until_receivers_keep_up());
    assert!(
        super::tests::futures_poll_once(wait).await.is_none(),
        "b is over its soft limit: a waits"
    );
    drain(&b);
    let wait = Box::pin(a.until_receivers_keep_up());
    assert!(super::tests::futures_poll_once(wait).await.is_some());
}

#[tokio::test]
async fn a_user_kept_to_some_rooms_lists_only_those() {
    let hub = hub();
    let _ops = connect(&hub, Some("ops"));
    let _lobby = connect(&hub, Some("lobby"));
    let mut user = connect(&hub, None);
    user.log_in(None, Box::new(LobbyOnly)).await.unwrap();
    let listed: Vec<String> = user
        .rooms(None)
        .items
        .iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(listed, ["lobby"]);
}

#[tokio::test]
async fn a_certificate_or_a_login_gives_the_client_its_name_for_good() {
    let hub = hub();
    let mut holder = connect(&hub, None);
    holder
        .take_certified_name(Name::new("plc-7").unwrap())
        .await
        .unwrap();
    assert_eq!(holder.name().as_str(), "plc-7");
    assert!(matches!(
        holder.rename(Name::new("other").unwrap()).await,
        Err(HubError::NameLocked(_))
    ));
    let mut squatter = connect(&hub, None);
    assert!(matches!(
        squatter.rename(Name::new("plc-7").unwrap()).await,
        Err(HubError::NameTaken(_) | HubError::CertificateName(_))
    ));

    let mut user = connect(&hub, None);
    user.log_in(Some(Name::new("uma").unwrap()), Box::new(LobbyOnly))
        .await
        .unwrap();
    assert_eq!(user.name().as_str(), "uma");
    assert_eq!(hub.client(user.id()).map(|c| c.logged_in), Some(true));
    assert!(matches!(
        user.rename(Name::new("other").unwrap()).await,
        Err(HubError::NameLocked(_))
    ));
    // A device's name is not a user's to take.
    hub.reserve_device_names("dev-");
    let mut fake = connect(&hub, None);
    assert!(matches!(
        fake.log_in(Some(Name::new("dev-1").unwrap()), Box::new(LobbyOnly))
            .await,
        Err(HubError::DeviceName { .. })
    ));
}

#[tokio::test]
async fn in_a_cluster_rooms_are_listed_with_every_nodes_members_largest_first() {
    let hub = hub();
    let node = node_b_beside(&hub);
    for (n, name, at) in [(7, "x", "ops"), (8, "y", "ops"), (9, "z", "far")] {
        let name = Name::new(name).unwrap();
        far_member(&hub, &node, ClientId::new(n), &name, room(at));
    }
    let a = connect(&hub, Some("ops"));
    let _b = connect(&hub, Some("lobby"));
    let _c = connect(&hub, Some("dev"));
    let listing = a.rooms(None);
    let shown: Vec<(String, usize)> = listing
        .items
        .iter()
        .map(|r| (r.name.to_string(), r.members))
        .collect();
    // At most 3 (the list limit): ops has one here and two there.
    assert_eq!(
        shown,
        [("ops".into(), 3), ("dev".into(), 1), ("far".into(), 1)]
    );
    assert_eq!((listing.total, listing.more), (4, true));
    let only = a.rooms(Some(&Pattern::new("f*").unwrap()));
    assert_eq!(only.items.len(), 1);
    assert_eq!(only.items[0].name.as_str(), "far");
    assert!(!only.more);

    let mut user = connect(&hub, None);
    user.log_in(None, Box::new(LobbyOnly)).await.unwrap();
    let seen: Vec<String> = user
        .rooms(None)
        .items
        .iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(seen, ["lobby"]);
}

#[test]
fn a_closed_client_leaves_its_rooms_saying_why_and_other_nodes_hear_it_once() {
    let hub = hub();
    let backplane = Arc::new(RecordsChanges {
        node: "a".into(),
        changes: Default::default(),
    });
    hub.set_backplane(backplane.clone());
    let a = connect(&hub, Some("ops"));
    let mut b = connect(&hub, Some("ops"));
    drain(&a);
    b.close(CloseReason::Kicked("enough".into()), false);
    assert!(b.outbox().is_closed());
    b.depart();
    let told = drain(&a);
    assert!(
        told.len() == 1 && told[0].starts_with("Left") && told[0].contains("\"kicked\""),
        "{told:?}"
    );
    // Departing again (as dropping the session does) tells nobody twice.
    drop(b);
    let departed = backplane
        .changes
        .lock()
        .unwrap()
        .iter()
        .filter(|change| matches!(change, Change::Departed { .. }))
        .count();
    assert_eq!(departed, 1);
}

#[tokio::test]
async fn a_later_hello_answers_with_every_nodes_members_of_the_room() {
    let hub = hub();
    let node = node_b_beside(&hub);
    let (id, far) = (ClientId::new(7), Name::new("far").unwrap());
    far_member(&hub, &node, id, &far, RoomName::lobby());
    let mut a = connect(&hub, Some("lobby"));
    let (_, here, members) = a.hello(None, None).await.unwrap();
    assert_eq!(
        (here, members),
        (RoomName::lobby(), 2),
        "one here, one there"
    );
}

#[test]
fn a_cluster_listing_of_exactly_the_list_limit_has_no_more() {
    let hub = hub();
    let node = node_b_beside(&hub);
    let (id, far) = (ClientId::new(7), Name::new("far").unwrap());
    far_member(&hub, &node, id, &far, room("far"));
    let a = connect(&hub, Some("one"));
    let _b = connect(&hub, Some("two"));
    // far, one, two: three rooms, the list limit.
    let listing = a.rooms(None);
    assert_eq!(
        (listing.items.len(), listing.total, listing.more),
        (3, 3, false)
    );
}

/// A client `name` (`id`) of node `node` connects there and joins `room`,
/// the first of that node in it, as the cluster tells this hub.
fn far_member(hub: &Hub, node: &NodeName, id: ClientId, name: &Name, room: RoomName) {
    hub.remote_change(
        node,
        Change::Connected {
            id,
            name: name.clone(),
        },
    );
    hub.remote_change(
        node,
        Change::Joined {
            id,
            name: name.clone(),
            room,
            first: true,
        },
    );
}

/// Makes `hub` node `a` of a cluster (its changes recorded, unread);
/// returns the name of another node, `b`, whose clients the test adds.
fn node_b_beside(hub: &Hub) -> NodeName {
    hub.set_backplane(Arc::new(RecordsChanges {
        node: "a".into(),
        changes: Default::default(),
    }));
    "b".into()
}

/// A sealed room (a playground port's) holds only the clients its listener
/// put there: nobody else joins it, sees it listed, or reaches its clients
/// by name; they hear each other.
#[tokio::test]
async fn a_sealed_room_is_out_of_every_other_clients_reach() {
    let hub = hub();
    let port = RoomName::sealed("play-30001").unwrap();
    let sealed = || ClientMeta {
        sealed: true,
        ..ClientMeta::default()
    };
    let mut device = hub.connect(None, &[DEBUG, DEBUG], sealed());
    device.join(port.clone()).unwrap();
    let mut other = hub.connect(None, &[DEBUG, DEBUG], sealed());
    other.join(port.clone()).unwrap();
    let mut outsider = connect(&hub, Some("lobby"));

    assert!(matches!(
        outsider.join(port.clone()),
        Err(HubError::Forbidden(_))
    ));
    assert!(
        RoomName::parse_user(b"~play-30001").is_err(),
        "no client can name it"
    );
    let listed = outsider.rooms(None);
    assert!(
        listed.items.iter().all(|room| !room.name.is_sealed()),
        "{:?}",
        listed.items
    );
    assert_eq!(
        outsider
            .direct(&device.name().clone(), Body::line("psst"))
            .await,
        Err(HubError::NoSuchClient(device.name().clone()))
    );
    // Nor can the sealed client go elsewhere, or reach anyone by name.
    assert!(matches!(
        device.join(RoomName::lobby()),
        Err(HubError::Forbidden(_))
    ));
    assert!(matches!(
        device
            .direct(&outsider.name().clone(), Body::line("hi"))
            .await,
        Err(HubError::Forbidden(_))
    ));

    drain(&other);
    device
        .say(Some(&port), Body::line("Hello World"))
        .await
        .unwrap();
    let heard = drain(&other);
    assert!(heard.iter().any(|l| l.contains("Hello World")), "{heard:?}");
    assert!(drain(&outsider).iter().all(|l| !l.contains("Hello World")));
}

/// A UDP peer's session is parked between its datagrams: parked, the
/// client is still in its rooms under its name and is sent what they
/// say; resumed, it goes on as it was; a parked session dropped departs,
/// as a session does.
#[tokio::test]
async fn a_parked_session_stays_in_its_rooms_and_departs_when_dropped() {
    let hub = hub();
    let mut peer = connect(&hub, Some("lobby"));
    peer.join(room("ops")).unwrap();
    peer.rename(Name::new("esp-1").unwrap()).await.unwrap();
    let id = peer.id();
    let other = connect(&hub, Some("ops"));
    drain(&other);

    let parked = peer.park();
    let client = hub.client(id).expect("still connected");
    assert_eq!(client.name.as_str(), "esp-1");
    let mut rooms: Vec<String> = client.rooms.iter().map(|r| r.as_str().into()).collect();
    rooms.sort();
    assert_eq!(rooms, ["lobby", "ops"]);
    other.say(None, Body::line("to ops")).await.unwrap();

    let mut peer = parked.resume();
    assert_eq!(peer.name().as_str(), "esp-1");
    assert!(drain(&peer).iter().any(|line| line.contains("to ops")));
    peer.say(None, Body::line("back")).await.unwrap();
    assert!(
        drain(&other).iter().any(|line| line.contains("back")),
        "it says to its current room, ops, as before"
    );
    peer.leave(&room("ops")).unwrap();

    // In one room, it is parked with that room alone (no list).
    let lobby = connect(&hub, Some("lobby"));
    drain(&lobby);
    let peer = peer.park().resume();
    peer.say(None, Body::line("still here")).await.unwrap();
    assert!(drain(&lobby).iter().any(|line| line.contains("still here")));
    assert_eq!(peer.rooms_capacity(), 1);

    let parked = peer.park();
    drop(parked);
    assert!(hub.client(id).is_none(), "dropped, it departed");
    let mut again = connect(&hub, Some("lobby"));
    again
        .rename(Name::new("esp-1").unwrap())
        .await
        .expect("its name is free");
}
