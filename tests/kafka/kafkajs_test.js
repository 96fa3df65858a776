// KafkaJS 2.2.4 (npm; a client nobody here wrote) against runneld's Kafka listener: admin
// (create, describe, offsets, offsets by time, configs, partitions, delete), an idempotent
// producer with acks -1, plain and gzip (what it wrote is read back with runnelctl), and a group
// consumer whose commits the admin client and runnelctl read back.
// Run by kafkajs_test.sh with RUNNELD, RUNNELCTL and NODE_PATH set.
'use strict';
const assert = require('assert');
const { execFileSync, spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { Kafka, CompressionTypes, logLevel } = require('kafkajs');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runnel-kafkajs-'));
const ready = path.join(dir, 'ready.json');
const runneld = spawn(process.env.RUNNELD, [
  '--data-dir', path.join(dir, 'data'), '--port', '0', '--kafka-port', 'any', '--no-http',
  '--ready-file', ready, '--log-level', 'warn', '--kafka-group-initial-delay', '0s'],
  { stdio: 'inherit' });

function stop() {
  runneld.kill('SIGTERM');
  fs.rmSync(dir, { recursive: true, force: true });
}

async function waitReady() {
  for (let i = 0; i < 2000; i++) {
    if (fs.existsSync(ready)) return JSON.parse(fs.readFileSync(ready));
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('runneld did not start');
}

async function main() {
  const info = await waitReady();
  const ctl = (...args) => execFileSync(process.env.RUNNELCTL,
    ['--broker', `127.0.0.1:${info.port}`, ...args], { encoding: 'utf8' });
  const kafka = new Kafka({ clientId: 'kafkajs-test', brokers: [`127.0.0.1:${info.kafka_port}`],
                            logLevel: logLevel.ERROR });
  const admin = kafka.admin();
  await admin.connect();
  const topic = 'kafkajs-orders';
  assert.strictEqual(await admin.createTopics({ topics: [{ topic, numPartitions: 3,
    configEntries: [{ name: 'retention.ms', value: '3600000' }] }] }), true);
  const md = await admin.fetchTopicMetadata({ topics: [topic] });
  assert.deepStrictEqual(md.topics[0].partitions.map((p) => p.partitionId).sort(), [0, 1, 2]);
  assert.ok(md.topics[0].partitions.every((p) => p.leader === 0));

  const before = Date.now() - 1000;
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const messages = [];
  for (let i = 0; i < 30; i++) {
    messages.push({ key: `k${i}`, value: `v${i}`, partition: i % 3, headers: { n: `${i}` } });
  }
  await producer.send({ topic, acks: -1, messages: messages.slice(0, 15) });
  await producer.send({ topic, acks: -1, compression: CompressionTypes.GZIP,
                        messages: messages.slice(15) });
  const offsets = await admin.fetchTopicOffsets(topic);
  assert.deepStrictEqual(offsets.map((o) => [o.partition, o.high, o.low]).sort(),
                         [[0, '10', '0'], [1, '10', '0'], [2, '10', '0']]);
  const byTime = await admin.fetchTopicOffsetsByTimestamp(topic, before);
  assert.ok(byTime.every((o) => o.offset === '0'), JSON.stringify(byTime));

  const configs = await admin.describeConfigs({ resources: [{ type: 2, name: topic }],
                                                includeSynonyms: false });
  const retention = configs.resources[0].configEntries.find((e) => e.configName === 'retention.ms');
  assert.strictEqual(retention.configValue, '3600000');

  // Read natively: every record with its key, value and header.
  const lines = ctl('consume', topic, '--format', '{partition} {offset} {key} {value} {headers}')
    .trim().split('\n').sort();
  assert.strictEqual(lines.length, 30);
  for (let i = 0; i < 30; i++) {
    const want = `${i % 3} ${Math.floor(i / 3)} k${i} v${i} n=${i}`;
    assert.ok(lines.includes(want), `missing "${want}" in ${lines.join(' | ')}`);
  }

  // A group consumer: joins, reads all 30 records from the beginning and commits them.
  const groupId = 'kafkajs-group';
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = new Set();
  let allSeen;
  const done = new Promise((resolve) => { allSeen = resolve; });
  await consumer.run({
    autoCommitThreshold: 1,
    eachMessage: async ({ partition, message }) => {
      seen.add(`${partition}:${message.offset}`);
      if (seen.size === 30) allSeen();
    },
  });
  let timer;
  await Promise.race([done, new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`consumed ${seen.size} of 30`)), 60000);
  })]);
  clearTimeout(timer);
  await consumer.disconnect();  // commits what it consumed, then leaves the group
  const committed = await admin.fetchOffsets({ groupId, topics: [topic] });
  assert.deepStrictEqual(committed[0].partitions.map((p) => [p.partition, p.offset]).sort(),
                         [[0, '10'], [1, '10'], [2, '10']]);
  const described = JSON.parse(ctl('--json', 'group', 'describe', groupId));
  assert.strictEqual(described.protocol, 'kafka');
  assert.strictEqual(described.state, 'Empty');
  assert.strictEqual(described.lag, 0);
  const groups = await admin.listGroups();
  assert.ok(groups.groups.some((g) => g.groupId === groupId && g.protocolType === 'consumer'));

  await admin.createPartitions({ topicPartitions: [{ topic, count: 5 }] });
  assert.strictEqual(JSON.parse(ctl('--json', 'topic', 'describe', topic)).partitions.length, 5);
  await admin.deleteTopics({ topics: [topic] });
  assert.ok(!(await admin.listTopics()).includes(topic));
  await producer.disconnect();
  await admin.disconnect();
}

main().then(() => { stop(); console.log('kafkajs_test: ok'); },
            (e) => { console.error('kafkajs_test: FAILED', e); stop(); process.exit(1); });
