use super::*;
use bytes::Bytes;
use std::time::Duration;

pub(super) fn settings() -> HubSettings {
    HubSettings {
        queue: QueueLimits {
            soft: 1 << 16,
            hard: 1 << 20,
            pause: Duration::from_secs(60),
        },
        announce_max_members: 64,
        max_rooms_per_client: 4,
        max_list: 3,
        max_list_scan: 10_000,
        slow_timeout: None,
        max_memory: 1 << 30,
    }
}

pub(super) fn hub() -> Hub {
    Hub::new(settings())
}

/// A wire format for tests: each event as its debug form on a line.
pub(super) const DEBUG: Encoding = Encoding {
    slot: ENCODING_SLOTS - 1,
    encode: |event, out| out.extend_from_slice(format!("{event:?}\n").as_bytes()),
};

pub(super) fn connect(hub: &Hub, room: Option<&str>) -> Session {
    hub.connect(
        room.map(|r| RoomName::new(r).unwrap()),
        &[DEBUG, DEBUG],
        ClientMeta::default(),
    )
}

/// The events queued for `session`, one debug line each.
pub(super) fn drain(session: &Session) -> Vec<String> {
    session
        .outbox()
        .take()
        .items
        .iter()
        .flat_map(|bytes| {
            String::from_utf8(bytes.to_vec())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn a_room_message_reaches_everyone_in_the_room_but_the_sender() {
    let hub = hub();
    let a = connect(&hub, Some("lobby"));
    let b = connect(&hub, Some("lobby"));
    drain(&a);
    drain(&b);
    a.say(None, Body::line("hi")).await.unwrap();
    assert!(drain(&a).is_empty());
    let expected = Event::Message {
        offset: None,
        room: RoomName::lobby(),
        from: a.name().clone(),
        body: Body::line("hi"),
    };
    assert_eq!(drain(&b), vec![format!("{expected:?}")]);
}

#[tokio::test]
async fn rooms_are_kept_apart() {
    let hub = hub();
    let mut a = connect(&hub, None);
    let mut b = connect(&hub, None);
    let c = connect(&hub, Some("lobby"));
    a.join(RoomName::new("x").unwrap()).unwrap();
    b.join(RoomName::new("x").unwrap()).unwrap();
    drain(&b);
    a.say(None, Body::line("in x")).await.unwrap();
    assert_eq!(drain(&b).len(), 1);
    assert!(drain(&c).is_empty());
}

#[tokio::test]
async fn names_are_unique_ignoring_case_and_look_alikes_and_freed_on_disconnect() {
    let hub = hub();
    let mut a = connect(&hub, None);
    let mut b = connect(&hub, None);
    a.rename(Name::new("Alice").unwrap()).await.unwrap();
    for taken in ["alice", "ALICE", "AIice"] {
        assert_eq!(
            b.rename(Name::new(taken).unwrap()).await,
            Err(HubError::NameTaken(Name::new(taken).unwrap())),
            "{taken}"
        );
    }
    drop(a);
    assert!(b.rename(Name::new("alice").unwrap()).await.is_ok());
}

#[tokio::test]
async fn guest_names_are_the_servers_to_give() {
    let hub = hub();
    let mut a = connect(&hub, None);
    for taken in ["guest-2", "GUEST-99", "guest-x"] {
        assert_eq!(
            a.rename(Name::new(taken).unwrap()).await,
            Err(HubError::GuestName(Name::new(taken).unwrap())),
            "{taken}"
        );
    }
    // Its own guest name is its own, and a name merely containing "guest" is fine.
    let own = a.name().clone();
    assert!(a.rename(own).await.is_ok());
    assert!(a.rename(Name::new("my-guest-2").unwrap()).await.is_ok());
}

#[test]
fn leaving_tells_the_room_and_an_empty_room_disappears() {
    let hub = hub();
    let mut a = connect(&hub, Some("lobby"));
    let b = connect(&hub, Some("lobby"));
    drain(&a);
    drop(b);
    let told = drain(&a);
    assert_eq!(told.len(), 1);
    assert!(
        told[0].starts_with("Left") && told[0].contains("\"disconnected\""),
        "{told:?}"
    );
    a.leave(&RoomName::lobby()).unwrap();
    assert_eq!(a.rooms(None).total, 0);
}

#[test]
fn the_room_limit_is_enforced() {
    let hub = hub();
    let mut a = connect(&hub, None);
    for i in 0..4 {
        a.join(RoomName::new(&format!("r{i}")).unwrap()).unwrap();
    }
    assert_eq!(
        a.join(RoomName::new("r4").unwrap()),
        Err(HubError::TooManyRooms { limit: 4 })
    );
    // Re-joining a room already joined only makes it current.
    a.join(RoomName::new("r0").unwrap()).unwrap();
    assert_eq!(a.current_room().unwrap().as_str(), "r0");
}

#[test]
fn room_listings_show_the_largest_first_up_to_the_limit() {
    let hub = hub();
    let mut clients = Vec::new();
    // Room "r{i}" gets i + 1 members.
    for i in 0..5 {
        for _ in 0..=i {
            clients.push(connect(&hub, Some(&format!("r{i}"))));
        }
    }
    let mut dev = connect(&hub, Some("dev-1"));
    dev.join(RoomName::new("dev-2").unwrap()).unwrap();
    let all = clients[0].rooms(None);
    let shown: Vec<(String, usize)> = all
        .items
        .iter()
        .map(|r| (r.name.to_string(), r.members))
        .collect();
    assert_eq!(
        shown,
        [("r4".into(), 5), ("r3".into(), 4), ("r2".into(), 3)]
    );
    assert_eq!((all.total, all.more), (7, true));
    let devs = clients[0].rooms(Some(&Pattern::new("dev-*").unwrap()));
    assert_eq!(devs.items.len(), 2);
    assert!(!devs.more);
    // Leaving moves a room down the order.
    for client in clients
        .iter_mut()
        .filter(|c| c.current_room().unwrap().as_str() == "r4")
    {
        client.leave(&RoomName::new("r4").unwrap()).unwrap();
    }
    assert_eq!(clients[0].rooms(None).items[0].name.as_str(), "r3");
}

#[tokio::test]
async fn who_shows_at_most_the_limit_with_the_total() {
    let hub = hub();
    let mut clients: Vec<Session> = (0..5).map(|_| connect(&hub, Some("lobby"))).collect();
    clients[4].rename(Name::new("zed").unwrap()).await.unwrap();
    let (room, listing) = clients[0].who(None, None).unwrap();
    assert_eq!(room, RoomName::lobby());
    assert_eq!(
        (listing.items.len(), listing.total, listing.more),
        (3, 5, true)
    );
    let (_, zed) = clients[0]
        .who(None, Some(&Pattern::new("z").unwrap()))
        .unwrap();
    assert_eq!(zed.items, vec![Name::new("zed").unwrap()]);
    assert!(!zed.more);
}

#[tokio::test]
async fn notices_congest_receivers_and_the_client_who_caused_them_waits() {
    let hub = Hub::new(HubSettings {
        queue: QueueLimits {
            soft: 4096,
            hard: 1 << 20,
            pause: Duration::from_secs(60),
        },
        ..settings()
    });
    let reader = connect(&hub, Some("lobby"));
    let mut renamer = connect(&hub, Some("lobby"));
    let mut i = 0;
    while reader.outbox().pending() <= 4096 {
        renamer
            .rename(Name::new(&format!("n{i}")).unwrap())
            .await
            .unwrap();
        i += 1;
    }
    let waiting = renamer.until_receivers_keep_up();
    tokio::pin!(waiting);
    assert!(
        futures_poll_once(waiting.as_mut()).await.is_none(),
        "the renamer must wait while the reader is congested"
    );
    let batch = reader.outbox().take();
    let weight: usize = batch.items.iter().map(super::weight).sum();
    reader.outbox().written(weight);
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("released once the reader drained");
}

/// Polls `future` once: `Some` if it finished.
pub(super) async fn futures_poll_once<F: std::future::Future + Unpin>(
    future: F,
) -> Option<F::Output> {
    let mut future = future;
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut future).poll(cx) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[test]
fn the_sweep_cuts_off_the_largest_holders_when_over_the_memory_budget() {
    let hub = Hub::new(HubSettings {
        max_memory: 100_000,
        ..settings()
    });
    let small = connect(&hub, None);
    let big = connect(&hub, None);
    small.set_input_held(20_000);
    big.set_input_held(90_000);
    assert!(!hub.memory_nearly_full());
    let sweep = hub.sweep();
    assert_eq!(sweep.cut.len(), 1);
    assert_eq!(sweep.cut[0].0, big.id());
    assert!(matches!(
        big.outbox().closing().unwrap().reason,
        CloseReason::MemoryBudget {
            held: 90_000,
            budget: 100_000
        }
    ));
    assert!(small.outbox().closing().is_none());
    assert_eq!(sweep.held, 20_000);
    small.set_input_held(95_000);
    big.set_input_held(0);
    let _ = hub.sweep();
    assert!(hub.memory_nearly_full());
}

#[tokio::test(start_paused = true)]
async fn the_sweep_cuts_off_a_receiver_congested_past_the_slow_timeout() {
    let hub = Hub::new(HubSettings {
        queue: QueueLimits {
            soft: 100,
            hard: 1 << 20,
            pause: Duration::from_secs(60),
        },
        slow_timeout: Some(Duration::from_millis(300)),
        ..settings()
    });
    let slow = connect(&hub, None);
    let _ = slow.reply(Bytes::from(vec![b'x'; 200]));
    // The clock is paused: it moves only when advanced.
    tokio::time::advance(Duration::from_millis(299)).await;
    let sweep = hub.sweep();
    assert!(sweep.cut.is_empty(), "cut off before the slow timeout");
    assert!(slow.outbox().closing().is_none());
    // Past it by more than the outbox's whole-millisecond rounding.
    tokio::time::advance(Duration::from_millis(3)).await;
    let sweep = hub.sweep();
    assert_eq!(sweep.cut.len(), 1, "not cut off after the slow timeout");
    assert!(matches!(
        slow.outbox().closing().unwrap().reason,
        CloseReason::TooSlow { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_fleet_is_swept_a_tenth_at_a_time_and_each_client_within_ten_sweeps() {
    let hub = Hub::new(HubSettings {
        queue: QueueLimits {
            soft: 100,
            hard: 1 << 20,
            pause: Duration::from_secs(60),
        },
        slow_timeout: Some(Duration::from_millis(300)),
        ..settings()
    });
    let fleet: Vec<Session> = (0..super::sweep::SWEEP_ALL_UP_TO + 10)
        .map(|_| connect(&hub, None))
        .collect();
    let slow = &fleet[fleet.len() / 2];
    let _ = slow.reply(Bytes::from(vec![b'x'; 200]));
    // Past the timeout, in whole milliseconds as the outbox counts them.
    tokio::time::advance(Duration::from_millis(302)).await;
    let mut sweeps = 0;
    while slow.outbox().closing().is_none() {
        sweeps += 1;
        assert!(
            sweeps <= super::sweep::SWEEP_PARTS,
            "not cut off in a round of parts"
        );
        let _ = hub.sweep();
    }
    assert!(matches!(
        slow.outbox().closing().unwrap().reason,
        CloseReason::TooSlow { .. }
    ));
    // After a round, every part's sum is fresh: what they hold, exactly.
    fleet[0].set_input_held(1_000);
    for _ in 0..super::sweep::SWEEP_PARTS {
        let _ = hub.sweep();
    }
    assert_eq!(hub.memory_held(), 1_000);
}

/// A member is memory every client holds while connected, idle or not: a
/// feature that grows it shows here first (it was 336 bytes before the
/// arrival flag, which fits in its padding; 320 since an outbox's close
/// is boxed, which paid for the choice of its writer; 304 since a client's
/// address is a `PeerAddr`, not a 32-byte `SocketAddr`; 240 since its
/// outbox waits on one of the hub's shared wait lists, not a `Notify` of
/// its own, queues in a `Vec`, and is woken through one waker whoever
/// drains it, and its yes-or-no states are bits of one byte; still 240
/// since its name is kept inline, 8 bytes more, paid for by its outbox's
/// congestion clock in 4). In its
/// `Arc`, 240 bytes are a 256-byte block of jemalloc's, the binary's
/// allocator; 8 more and it takes a 320-byte one.
///
/// Its outbox is inside it, and guarded on its own too: a queue that grows
/// is the first place a feature would add a field.
#[test]
fn a_member_stays_within_its_size() {
    let (member, outbox) = (
        std::mem::size_of::<super::Member>(),
        std::mem::size_of::<super::Outbox>(),
    );
    println!("a member: {member} bytes, of which its outbox {outbox}");
    assert!(member <= 240, "Member is {member} bytes");
    assert!(outbox <= 96, "Outbox is {outbox} bytes");
}

/// A parked session is held by every quiet UDP peer: its member pointer,
/// its rooms (one inline, or a slice) and a box for what few sessions
/// have. 48 bytes while it held its hub and its rooms as a slice always.
#[test]
fn a_parked_session_stays_within_its_size() {
    let parked = std::mem::size_of::<super::ParkedSession>();
    println!("a parked session: {parked} bytes");
    assert!(parked <= 32, "ParkedSession is {parked} bytes");
}

/// A room is memory every room holds while anyone is in it, and with a
/// room per device (`room=dev-{id}`) that is once per device: in its
/// `Arc`, 144 bytes are a 160-byte block of jemalloc's; 8 more and it
/// takes a 192-byte one (as it did while its member map kept a seed for
/// its hasher).
#[test]
fn a_room_stays_within_its_size() {
    let room = std::mem::size_of::<super::room::Room>();
    println!("a room: {room} bytes");
    assert!(room <= 144, "Room is {room} bytes");
}

/// A backplane that counts what it is asked to publish.
#[derive(Debug, Default)]
struct CountsPublications {
    node: Option<NodeName>,
    published: std::sync::atomic::AtomicUsize,
}

impl Backplane for CountsPublications {
    fn node(&self) -> Option<&NodeName> {
        self.node.as_ref()
    }
    fn publish(&self, _: &RoomName, _: &Name, _: ClientId, _: &[Body]) {
        self.published
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn direct(&self, _: &RemoteClient, _: &Name, _: &Name, _: ClientId, _: &Body) {}
    fn changed(&self, _: Change) {}
    fn claim(&self, _: ClientId, _: &Name) -> Claim {
        Box::pin(std::future::ready(Ok(())))
    }
    fn unclaim(&self, _: ClientId, _: &Name) {}
    fn replace_device(&self, _: &RemoteClient, _: &Name, _: DeviceProof) {}
    fn reserve_device_names(&self, _: &str) {}
}

/// A room's messages go to the other nodes only while one of them has a
/// member there: Redis is not asked to carry what nobody elsewhere hears.
#[tokio::test]
async fn a_room_is_published_to_other_nodes_only_while_they_have_members_in_it() {
    let hub = hub();
    let backplane = Arc::new(CountsPublications {
        node: Some("a".into()),
        ..Default::default()
    });
    hub.set_backplane(backplane.clone());
    let published = || {
        backplane
            .published
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let ops = RoomName::new("ops").unwrap();
    let local = connect(&hub, Some("ops"));
    local
        .say(None, Body::line("nobody elsewhere"))
        .await
        .unwrap();
    assert_eq!(published(), 0, "no other node has a member in #ops");

    let node: NodeName = "b".into();
    let (id, name) = (ClientId::new(7), Name::new("bob").unwrap());
    hub.remote_change(
        &node,
        Change::Connected {
            id,
            name: name.clone(),
        },
    );
    let joined = Change::Joined {
        id,
        name: name.clone(),
        room: ops.clone(),
        first: true,
    };
    hub.remote_change(&node, joined);
    local.say(None, Body::line("bob hears this")).await.unwrap();
    assert_eq!(published(), 1, "bob on node b is in #ops");

    let left = Change::Left {
        id,
        name,
        room: ops,
        reason: "left".into(),
        last: true,
    };
    hub.remote_change(&node, left);
    local.say(None, Body::line("nobody again")).await.unwrap();
    assert_eq!(published(), 1, "bob left #ops");
}
