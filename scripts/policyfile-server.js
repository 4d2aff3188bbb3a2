// The npm `policyfile` package's server on 127.0.0.1, port 0 (the kernel picks), for the policy
// benchmark; prints "listening on 127.0.0.1:PORT" like amf-bench does.
const path = process.argv[2];
const policyfile = require(path);
const server = policyfile.createServer({ log: false }, ['*:*']);
server.listen(0, function () {
  const address = server.socket.address();
  console.log('listening on 127.0.0.1:' + address.port);
});
