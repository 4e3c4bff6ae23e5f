/// Log metadata keys, defined once.
package enum LogKey {
    package static let requestID = "mdm.request_id"
    package static let enrollmentID = "mdm.enrollment_id"
    package static let messageType = "mdm.message_type"
    package static let commandUUID = "mdm.command_uuid"
    package static let status = "mdm.status"
    package static let webhookEventID = "mdm.webhook_event_id"
    /// The receiver's host only: the URL may carry credentials.
    package static let webhookHost = "mdm.webhook_host"
    package static let webhookTopic = "mdm.webhook_topic"
}
