//! Each subscription follows its own retry policy, whichever instance
//! attempts it: the preset's by name, one the host registered, or its own
//! waits. An instance that does not know a subscription's policy leaves its
//! deliveries alone.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Running, over_http, start};
use serde_json::json;
use webhooks_core::{
    DeliveryState, DisablePolicy, ManualClock, Preset, RetryChoice, Schedule, Store, Subscription,
    SubscriptionUpdate, Webhooks,
};
use webhooks_testkit::{Receiver, Reply};

/// An instance on `store` with `preset`, the shared clock, and the
/// "premium" policy registered when `premium` is.
fn instance(
    store: &Arc<dyn Store>,
    preset: Preset,
    clock: &ManualClock,
    premium: Option<Schedule>,
) -> Webhooks {
    let builder =
        Webhooks::builder().shared_store(Arc::clone(store)).preset(over_http(preset)).clock(clock.clone());
    let builder = match premium {
        Some(premium) => builder.retry_policy("premium", premium),
        None => builder,
    };
    builder.build().unwrap()
}

fn premium() -> Schedule {
    Schedule::new([7, 11].map(Duration::from_secs)).unwrap()
}

async fn instances_built_with_other_presets_follow_each_subscriptions_own_schedule(store: Arc<dyn Store>) {
    let clock = ManualClock::new(start());
    let deepsmith = instance(&store, Preset::deepsmith(), &clock, Some(premium()));
    let smartlyq = instance(&store, Preset::smartlyq(), &clock, Some(premium()));
    let receiver = Receiver::scripted(|_, _| Reply::status(500)).await.unwrap();
    let subscribe = |choice: Option<RetryChoice>| {
        let mut new = Subscription::builder(receiver.url()).event_type("iq.status_updated");
        if let Some(choice) = choice {
            new = new.retry(choice);
        }
        deepsmith.subscribe(new)
    };
    let preset_default = subscribe(None).await.unwrap();
    assert_eq!(preset_default.settings.retry, Some(RetryChoice::named("DeepSmith")), "named at subscribe");
    let named = subscribe(Some(RetryChoice::named("premium"))).await.unwrap();
    let own = subscribe(Some(RetryChoice::waits_ms([3_000, 4_000]).unwrap())).await.unwrap();

    // Every attempt is made by the instance built with SmartlyQ (retries
    // after 2 minutes and more): each subscription keeps its own schedule.
    let published = deepsmith.publish("iq.status_updated", json!({})).await.unwrap().deliveries;
    let running = Running::start(smartlyq.dispatcher().allow_private_networks(true).build().unwrap());
    running.settle().await;
    let mut waits = Vec::new();
    for id in &published {
        let delivery = smartlyq.delivery(*id).await.unwrap().unwrap();
        assert_eq!((delivery.state, delivery.attempts), (DeliveryState::Pending, 1));
        let wait = delivery.next_attempt_at.unwrap() - start();
        waits.push((delivery.subscription_id, wait.num_seconds()));
    }
    waits.sort();
    let mut expected = vec![(preset_default.id, 10), (named.id, 7), (own.id, 3)];
    expected.sort();
    assert_eq!(waits, expected);

    // The second failure follows the same schedules.
    running.advance(&clock, Duration::from_secs(10)).await;
    running.stop().await;
    for id in &published {
        let delivery = smartlyq.delivery(*id).await.unwrap().unwrap();
        assert_eq!(delivery.attempts, 2, "{id}");
        let second_at = smartlyq.attempts(*id).await.unwrap()[1].started_at;
        let second_wait = if delivery.subscription_id == preset_default.id {
            60
        } else if delivery.subscription_id == named.id {
            11
        } else {
            4
        };
        assert_eq!((delivery.next_attempt_at.unwrap() - second_at).num_seconds(), second_wait, "{id}");
    }
}

async fn an_instance_that_does_not_know_the_policy_leaves_the_delivery_pending(store: Arc<dyn Store>) {
    let clock = ManualClock::new(start());
    let knows = instance(&store, Preset::deepsmith(), &clock, Some(premium()));
    let does_not = instance(&store, Preset::deepsmith(), &clock, None);
    let receiver = Receiver::scripted(|_, _| Reply::status(500)).await.unwrap();
    let new = Subscription::builder(receiver.url()).event_type("iq.status_updated");
    let subscription = knows.subscribe(new.clone().retry(RetryChoice::named("premium"))).await.unwrap();
    let error = does_not.subscribe(new.retry(RetryChoice::named("premium"))).await.unwrap_err();
    assert!(error.to_string().contains("premium"), "{error}");

    let id = knows.publish("iq.status_updated", json!({})).await.unwrap().deliveries[0];
    let running = Running::start(does_not.dispatcher().allow_private_networks(true).build().unwrap());
    running.settle().await;
    running.stop().await;
    assert!(receiver.received().is_empty(), "not attempted");
    let delivery = knows.delivery(id).await.unwrap().unwrap();
    assert_eq!((delivery.state, delivery.attempts), (DeliveryState::Pending, 0));

    // Changing the policy applies from the next failure: own waits now.
    let mut settings = subscription.settings.clone();
    settings.retry = Some(RetryChoice::waits_ms([5_000]).unwrap());
    let update = SubscriptionUpdate::new().settings(settings);
    does_not.update_subscription(subscription.id, update).await.unwrap();
    let running = Running::start(does_not.dispatcher().allow_private_networks(true).build().unwrap());
    running.advance(&clock, Duration::from_secs(60)).await;
    running.stop().await;
    let delivery = knows.delivery(id).await.unwrap().unwrap();
    assert_eq!(delivery.attempts, 1, "attempted once the policy is one it knows");
    let failed_at = knows.attempts(id).await.unwrap()[0].started_at;
    assert_eq!((delivery.next_attempt_at.unwrap() - failed_at).num_seconds(), 5);
    assert!(RetryChoice::waits_ms(vec![1; webhooks_core::MAX_OWN_WAITS + 1]).is_err());
}

async fn a_subscriptions_own_disable_rule_wins_over_the_presets(store: Arc<dyn Store>) {
    let clock = ManualClock::new(start());
    let webhooks = instance(&store, Preset::deepsmith(), &clock, None);
    let failing = Receiver::scripted(|_, _| Reply::status(500)).await.unwrap();
    let gone = Receiver::scripted(|_, _| Reply::status(410)).await.unwrap();
    let quick = || RetryChoice::waits_ms([1_000; 5]).unwrap();
    let subscribe = |url: &str, rule: Option<DisablePolicy>| {
        let mut new = Subscription::builder(url).event_type("iq.status_updated").retry(quick());
        if let Some(rule) = rule {
            new = new.disable_policy(rule);
        }
        webhooks.subscribe(new)
    };
    // DeepSmith disables after 10 failures in a row, and on 410 Gone.
    let after_two =
        subscribe(failing.url(), Some(DisablePolicy::after_consecutive_failures(2))).await.unwrap();
    let keeps_gone =
        subscribe(gone.url(), Some(DisablePolicy::never().disable_on_gone(false))).await.unwrap();
    let preset_rule = subscribe(gone.url(), None).await.unwrap();
    assert!(
        subscribe(
            failing.url(),
            Some(serde_json::from_str(r#"{"after_consecutive_failures":0,"on_gone":true}"#).unwrap())
        )
        .await
        .is_err()
    );

    webhooks.publish("iq.status_updated", json!({})).await.unwrap();
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    running.settle().await;
    running.advance(&clock, Duration::from_secs(1)).await;
    running.stop().await;
    let mut enabled = Vec::new();
    for id in [after_two.id, keeps_gone.id, preset_rule.id] {
        enabled.push(webhooks.subscription(id).await.unwrap().is_enabled());
    }
    // Two failures disable the first (not ten); 410 Gone does not disable
    // the second; the preset's rule disables the third on 410 Gone.
    assert_eq!(enabled, vec![false, true, false]);
    assert_eq!(webhooks.stats(keeps_gone.id).await.unwrap().attempts, 2, "and it is tried again");
}

on_every_store!(
    instances_built_with_other_presets_follow_each_subscriptions_own_schedule,
    an_instance_that_does_not_know_the_policy_leaves_the_delivery_pending,
    a_subscriptions_own_disable_rule_wins_over_the_presets,
);
