// A seed-style Node 20 twin of paygate's DirectPay deposit flow, run by
// `make bench` under the same Runtime API emulator as the Rust functions,
// so the cost of a million deposits has a reference. It does what the
// seed's Express service did (seed 000), as one Lambda handler with the
// AWS SDK v3: log in to DirectPay once per process (CSRF token, session
// cookie, login), create the cash-in and store the payment; on the
// callback, read the payment, confirm with DirectPay's status API, complete
// it and credit the wallet in one transaction, and queue the casino
// top-up. Not used by paygate itself.

import {
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  TransactWriteItemsCommand,
} from "@aws-sdk/client-dynamodb";
import { SQSClient, SendMessageCommand } from "@aws-sdk/client-sqs";
import { randomUUID } from "node:crypto";

const runtime = `http://${process.env.AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime`;
const table = process.env.PAYGATE_TABLE;
const queue = process.env.PAYGATE_TOPUP_QUEUE_URL;
const directpay = process.env.TWIN_DIRECTPAY_URL;
const ddb = new DynamoDBClient({});
// The endpoint from the environment, not the queue URL's host (as the
// Rust SDK does), so the bench counts the send.
const sqs = new SQSClient({ useQueueUrlAsEndpoint: false });
let session = null;

async function login() {
  const csrf = await fetch(`${directpay}/csrf_token`);
  const cookie = (csrf.headers.get("set-cookie") || "").split(";")[0];
  const { csrf_token } = await csrf.json();
  const r = await fetch(`${directpay}/create/login`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-csrf-token": csrf_token, cookie },
    body: JSON.stringify({
      username: process.env.TWIN_DIRECTPAY_USERNAME,
      password: process.env.TWIN_DIRECTPAY_PASSWORD,
    }),
  });
  const body = await r.json();
  return { token: body.data.token, csrf: csrf_token, cookie };
}

function headers(s) {
  return {
    "content-type": "application/json",
    authorization: `Bearer ${s.token}`,
    "x-csrf-token": s.csrf,
    cookie: s.cookie,
  };
}

const answer = (statusCode, body) => ({
  statusCode,
  headers: { "content-type": "application/json" },
  body: JSON.stringify(body),
});

async function create(event) {
  const input = JSON.parse(event.body);
  session ??= await login();
  const id = `twin_${randomUUID()}`;
  const r = await fetch(`${directpay}/pay_cashin`, {
    method: "POST",
    headers: headers(session),
    body: JSON.stringify({
      amount: input.amount / 100,
      webhook: `https://example.invalid/webhooks/directpay?payment_id=${id}`,
      redirectUrl: "https://example.invalid/thanks",
      merchantpaymentreferences: id,
    }),
  });
  const created = await r.json();
  const now = new Date().toISOString();
  await ddb.send(
    new PutItemCommand({
      TableName: table,
      Item: {
        pk: { S: `TWIN#${id}` },
        sk: { S: "PAY" },
        status: { S: "pending" },
        amount: { N: String(input.amount) },
        currency: { S: input.currency },
        reference: { S: input.reference },
        wallet_user_id: { S: input.wallet_user_id },
        provider_reference: { S: created.transactionId },
        created_at: { S: now },
        updated_at: { S: now },
      },
      ConditionExpression: "attribute_not_exists(pk)",
    }),
  );
  return answer(201, { id, status: "pending", provider_reference: created.transactionId, checkout: { url: created.link } });
}

async function callback(event) {
  const id = event.queryStringParameters?.payment_id;
  const got = await ddb.send(
    new GetItemCommand({ TableName: table, Key: { pk: { S: `TWIN#${id}` }, sk: { S: "PAY" } }, ConsistentRead: true }),
  );
  const payment = got.Item;
  if (!payment) return answer(404, { error: "payment not found" });
  if (payment.status.S !== "pending") return answer(200, { success: true });
  session ??= await login();
  const r = await fetch(`${directpay}/cashin_transactions_status/${payment.provider_reference.S}`, {
    headers: headers(session),
  });
  const status = await r.json();
  if (status.transaction_status !== "SUCCESS") return answer(200, { success: true });
  const now = new Date().toISOString();
  const wallet = `WAL#m_local#${payment.wallet_user_id.S}`;
  await ddb.send(
    new TransactWriteItemsCommand({
      TransactItems: [
        {
          Update: {
            TableName: table,
            Key: { pk: { S: `TWIN#${id}` }, sk: { S: "PAY" } },
            UpdateExpression: "SET #s = :done, updated_at = :now",
            ConditionExpression: "#s = :pending",
            ExpressionAttributeNames: { "#s": "status" },
            ExpressionAttributeValues: { ":done": { S: "completed" }, ":pending": { S: "pending" }, ":now": { S: now } },
          },
        },
        {
          Put: {
            TableName: table,
            Item: {
              pk: { S: wallet },
              sk: { S: `TWINENT#${id}#deposit` },
              kind: { S: "credit" },
              amount: payment.amount,
              currency: payment.currency,
              at: { S: now },
            },
            ConditionExpression: "attribute_not_exists(pk)",
          },
        },
        {
          Update: {
            TableName: table,
            Key: { pk: { S: wallet }, sk: { S: `TWINBAL#${payment.currency.S}` } },
            UpdateExpression: "ADD balance :a",
            ExpressionAttributeValues: { ":a": payment.amount },
          },
        },
      ],
    }),
  );
  await sqs.send(new SendMessageCommand({ QueueUrl: queue, MessageBody: JSON.stringify({ payment_id: id }) }));
  return answer(200, { success: true });
}

async function handle(event) {
  if (event.routeKey === "POST /v1/payments") return create(event);
  if (event.routeKey === "POST /webhooks/directpay") return callback(event);
  return answer(404, { error: "no route" });
}

for (;;) {
  const next = await fetch(`${runtime}/invocation/next`);
  const id = next.headers.get("lambda-runtime-aws-request-id");
  const event = await next.json();
  try {
    const result = await handle(event);
    await fetch(`${runtime}/invocation/${id}/response`, { method: "POST", body: JSON.stringify(result) });
  } catch (e) {
    await fetch(`${runtime}/invocation/${id}/error`, {
      method: "POST",
      body: JSON.stringify({ errorType: e.name, errorMessage: String(e.message) }),
    });
  }
}
