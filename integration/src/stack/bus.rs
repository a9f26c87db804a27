//! The event bus, its tap and dead-letter queues, the template's rules and schedules; and the
//! stack's delivery of events to the functions the rules name.

use anyhow::{Context, Result};
use keyward_shared::adapters::aws::EventBridgePublisher;
use keyward_shared::events::DomainEvent;
use keyward_shared::manifest::Manifest;
use keyward_shared::ports::EventPublisher;

use super::{INVOKE_TIMEOUT, LocalStack, summarise};
use crate::moto::MotoServer;
use crate::router::{Router, ScheduleDef, TemplateModel};

pub const BUS_LOGICAL_ID: &str = "EventBus";

pub struct Bus {
    pub name: String,
    pub tap_url: String,
    pub dlq_url: String,
    pub schedules: Vec<ScheduleDef>,
    router: Router,
    /// Rules on the default bus: AWS service events (CloudTrail API calls, S3 objects).
    aws_router: Router,
    sqs: aws_sdk_sqs::Client,
    publisher: EventBridgePublisher,
}

impl Bus {
    /// The bus, and a tap: a catch-all rule copying every event on it to a queue the stack
    /// drains; and the dead-letter queue.
    pub async fn create(
        moto: &MotoServer,
        model: &TemplateModel,
        manifest: &Manifest,
        suffix: &str,
    ) -> Result<Self> {
        let sdk = moto.sdk_config();
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let events = aws_sdk_eventbridge::Client::new(&sdk);
        let name = format!("keyward-{}-{suffix}", manifest.org);
        events
            .create_event_bus()
            .name(&name)
            .send()
            .await
            .context("create the event bus")?;
        let tap_url = create_queue(&sqs, &format!("keyward-tap-{suffix}")).await?;
        let tap_arn = queue_arn(&sqs, &tap_url).await?;
        let tap_rule = format!("keyward-tap-{suffix}");
        events
            .put_rule()
            .name(&tap_rule)
            .event_bus_name(&name)
            .event_pattern(r#"{"source":[{"prefix":""}]}"#)
            .send()
            .await
            .context("create the tap rule")?;
        let target = aws_sdk_eventbridge::types::Target::builder()
            .id("tap")
            .arn(&tap_arn)
            .build()?;
        events
            .put_targets()
            .rule(&tap_rule)
            .event_bus_name(&name)
            .targets(target)
            .send()
            .await
            .context("target the tap queue")?;
        Ok(Self {
            dlq_url: create_queue(&sqs, &format!("keyward-dlq-{suffix}")).await?,
            publisher: EventBridgePublisher::new(events, &name),
            name,
            tap_url,
            schedules: model.schedules.clone(),
            router: Router::new(model, BUS_LOGICAL_ID)?,
            aws_router: Router::default_bus(model)?,
            sqs,
        })
    }

    pub fn sqs(&self) -> &aws_sdk_sqs::Client {
        &self.sqs
    }
}

impl LocalStack {
    /// Puts domain events on the bus through the production adapter.
    pub async fn publish(&self, events: &[DomainEvent]) -> Result<()> {
        self.bus.publisher.publish(events).await?;
        Ok(())
    }

    /// Drains the tap queue, delivering each event to the functions whose rules match, until the
    /// queue stays empty (functions may publish more events while handling one).
    pub async fn pump(&mut self) -> Result<usize> {
        let mut delivered = 0;
        let mut idle_rounds = 0;
        while idle_rounds < 2 {
            let messages = receive(&self.bus.sqs, &self.bus.tap_url).await?;
            if messages.is_empty() {
                idle_rounds += 1;
                continue;
            }
            idle_rounds = 0;
            for message in messages {
                let body = message.body().unwrap_or_default();
                let envelope: serde_json::Value = serde_json::from_str(body)
                    .context("tap message is not an EventBridge envelope")?;
                delivered += self.deliver(&envelope, "").await?;
                self.delivered.push(envelope);
                if let Some(handle) = message.receipt_handle() {
                    delete(&self.bus.sqs, &self.bus.tap_url, handle).await?;
                }
            }
        }
        Ok(delivered)
    }

    /// Delivers one envelope to every function whose rule matches it (also used to simulate
    /// EventBridge's at-least-once redelivery).
    /// `note` is shown after the event in the timeline (e.g. "redelivered").
    pub async fn deliver(&mut self, envelope: &serde_json::Value, note: &str) -> Result<usize> {
        self.deliver_on(false, envelope, note).await
    }

    /// Delivers an AWS service event (CloudTrail API call, S3 object) through the default
    /// bus's rules of the template, as EventBridge would.
    pub async fn deliver_aws(&mut self, envelope: &serde_json::Value, note: &str) -> Result<usize> {
        self.deliver_on(true, envelope, note).await
    }

    async fn deliver_on(
        &mut self,
        default_bus: bool,
        envelope: &serde_json::Value,
        note: &str,
    ) -> Result<usize> {
        let mut label = format!(
            "{} ({})",
            envelope["detail-type"].as_str().unwrap_or("?"),
            envelope["source"].as_str().unwrap_or("?")
        );
        if !note.is_empty() {
            label = format!("{label} [{note}]");
        }
        let router = if default_bus {
            &self.bus.aws_router
        } else {
            &self.bus.router
        };
        let rules: Vec<(String, String)> = router
            .route(envelope)
            .map_err(anyhow::Error::msg)?
            .into_iter()
            .map(|r| (r.id.clone(), r.function.clone()))
            .collect();
        if rules.is_empty() {
            self.record(&label, "-", "-", "no rule matched".into());
        }
        for (rule, function_id) in &rules {
            let function = self.function(function_id)?;
            let name = function.name.clone();
            let outcome = match function.invoke(envelope, INVOKE_TIMEOUT).await {
                Ok(response) => summarise(&response),
                Err(error) => {
                    self.bus
                        .sqs
                        .send_message()
                        .queue_url(&self.bus.dlq_url)
                        .message_body(envelope.to_string())
                        .send()
                        .await?;
                    format!(
                        "FAILED {}: {} -> dead-letter queue",
                        error.error_type, error.error_message
                    )
                }
            };
            self.record(&label, rule, &name, outcome);
        }
        Ok(rules.len())
    }

    /// Fires a schedule of the template (as EventBridge Scheduler would) at `time`.
    pub async fn tick(
        &mut self,
        schedule_id: &str,
        time: chrono::DateTime<chrono::Utc>,
    ) -> Result<serde_json::Value> {
        let schedule = self
            .bus
            .schedules
            .iter()
            .find(|s| s.id == schedule_id)
            .cloned()
            .with_context(|| format!("no schedule {schedule_id} in the template"))?;
        let envelope = serde_json::json!({
            "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "region": crate::moto::REGION,
            "resources": [format!("arn:aws:events:{}:123456789012:rule/{}", crate::moto::REGION, schedule.id)], "detail": {}
        });
        let function = self.function(&schedule.function)?;
        let name = function.name.clone();
        let label = format!("Scheduled Event ({})", schedule.expression);
        match function.invoke(&envelope, INVOKE_TIMEOUT).await {
            Ok(response) => {
                let outcome = match response["key"].as_str() {
                    Some(key) => format!(
                        "digest {key} ({} records)",
                        response["records"].as_u64().unwrap_or(0)
                    ),
                    None => summarise(&response),
                };
                self.record(&label, &schedule.id, &name, outcome);
                Ok(response)
            }
            Err(error) => {
                self.record(&label, &schedule.id, &name, format!("FAILED {error}"));
                Err(anyhow::anyhow!("{schedule_id} failed: {error}"))
            }
        }
    }

    pub async fn dlq_depth(&self) -> Result<usize> {
        use aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages as Depth;
        let attrs = self
            .bus
            .sqs
            .get_queue_attributes()
            .queue_url(&self.bus.dlq_url)
            .attribute_names(Depth)
            .send()
            .await?;
        Ok(attrs
            .attributes()
            .and_then(|a| a.get(&Depth))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }
}

pub(super) async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String> {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await?
        .queue_url
        .context("CreateQueue returned no URL")
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String> {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await?;
    attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .context("queue has no ARN")
}

/// Up to ten messages, waiting a second for the first.
pub(super) async fn receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
) -> Result<Vec<aws_sdk_sqs::types::Message>> {
    let received = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await?;
    Ok(received.messages().to_vec())
}

pub(super) async fn delete(sqs: &aws_sdk_sqs::Client, url: &str, handle: &str) -> Result<()> {
    sqs.delete_message()
        .queue_url(url)
        .receipt_handle(handle)
        .send()
        .await?;
    Ok(())
}
