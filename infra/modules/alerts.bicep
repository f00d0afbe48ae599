// Azure Monitor alerts that page the ops address, independent of the app's own alert emails (which need
// the app, its database and ACS to work). All three are log search alerts on the Application Insights
// component, so they see what the app logs (shared/logs.py: "<stage>: <outcome> | {json dimensions}")
// and the host's invocation records.
//
// Poison queue: a scheduled query on traces rather than a queue metric, because Azure Monitor's queue
// metrics are per storage account, not per queue. It matches the app's own dead-letter log lines
// ("ingest: dead_lettered | {...}", "notify: dead-lettered", "webhook: signed body rejected and dead-lettered")
// and the host's "Message has reached MaxDequeueCount of 5. Moving message to queue '<queue>-poison'."
// The dead-letter sweep also mirrors poison queues into failed_events; GET /api/ops/failed-events lists them.
//
// Counting what sampling keeps. Application Insights sampling drops telemetry items and gives each kept item an
// itemCount (how many it stands for); counting rows undercounts, and a lone dead-letter trace could be dropped
// whole. So (1) host.json excludes Request, Exception and Trace from sampling, which makes every row the app and
// the host log arrive, and (2) each query counts sum(itemCount), not rows, so it stays right if sampling is ever
// turned back on (or another exporter samples).
//
// Empty results. Each query ends in `summarize <n> = sum(itemCount) | where <condition>`: summarize without `by`
// returns exactly one row even over no input (sum() of nothing is 0), and the final `where` keeps that row only
// when the alert condition holds. Every rule then fires on "Count of rows GreaterThan 0", and "no lead stored" is
// a row with stored == 0, not an empty table whose handling would depend on the rule's no-data semantics.

@description('Azure region of the alert rules (the region of the Application Insights component).')
param location string

@description('Tags applied to every resource of this module.')
param tags object

@description('Name of the action group.')
param actionGroupName string

@description('Comma-separated email addresses the alerts go to (the ops address).')
@minLength(3)
param alertEmails string

@description('Resource id of the Application Insights component the rules query.')
param appInsightsId string

@description('Prefix of the alert rule names.')
param namePrefix string

@description('Failed invocations (server-side failures) within 15 minutes that raise the function-failures alert.')
@minValue(1)
param functionFailureThreshold int = 5

@description('Hours without a single stored lead that raise the no-leads alert. Log search alerts look back at most two days and take these window sizes.')
@allowed([
  1
  2
  3
  4
  5
  6
  24
  48
])
param noLeadsHours int = 24

// ISO 8601 window as the alert API expects it: PT<n>H up to 6 hours, then whole days.
var noLeadsWindow = noLeadsHours >= 24 ? 'P${noLeadsHours / 24}D' : 'PT${noLeadsHours}H'

var emails = filter(map(split(alertEmails, ','), address => trim(address)), address => !empty(address))

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'Global'
  tags: tags
  properties: {
    enabled: true
    groupShortName: 'leadagent'
    emailReceivers: [
      for (address, i) in emails: {
        name: 'ops-${i}'
        emailAddress: address
        useCommonAlertSchema: true
      }
    ]
  }
}

resource poisonQueueAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-dead-letters'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Lead agent: messages dead-lettered (poison queue not empty)'
    description: 'A lead or a notification was dead-lettered in the last 15 minutes. GET /api/ops/failed-events, fix the cause, POST /api/ops/reprocess/{id}.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          // "contains", not "has": the outcome sits inside a JSON suffix; "dead-lettered" catches the webhook's and
          // the notifier's own wording.
          query: 'traces | where message contains "dead_lettered" or message contains "dead-lettered" or message has "MaxDequeueCount" | summarize deadLetters = sum(itemCount) | where deadLetters > 0'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource functionFailuresAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-function-failures'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Lead agent: function invocations failing'
    description: 'More than ${functionFailureThreshold} failed invocations in 15 minutes. Client errors (4xx: bad signatures, rate limits, unknown ids) are expected and not counted.'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'requests | where success == false | where not(resultCode startswith "4") | summarize failures = sum(itemCount) | where failures > ${functionFailureThreshold}'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource noLeadsAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-no-leads'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Lead agent: no lead stored for ${noLeadsHours} h'
    description: 'No "ingest: stored" trace in the last ${noLeadsHours} hours. Check the ads deliver, GET /api/health/facebook and that the webhook answers.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: noLeadsWindow
    criteria: {
      allOf: [
        {
          query: 'traces | where message startswith "ingest: stored" | summarize stored = sum(itemCount) | where stored < 1'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

@description('Resource id of the action group.')
output actionGroupId string = actionGroup.id
