// The end-to-end test's Flash client: a flash.net.Socket speaking AMF Socket RPC as an old SWF
// would, its AMF3 written and read by the Flash runtime itself (ByteArray.writeObject and
// readObject). It calls echo and push, answers the server's pings, then reports what it decoded
// to the server (a message and an echo) and to the page (ExternalInterface), shows it on stage
// for the screenshot, and closes the socket.
import flash.events.Event;
import flash.events.IOErrorEvent;
import flash.events.ProgressEvent;
import flash.events.SecurityErrorEvent;
import flash.external.ExternalInterface;
import flash.net.Socket;
import flash.text.TextField;
import flash.utils.ByteArray;

class Main {
    // Ruffle's socketProxy maps this host and port to the WebSocket under test.
    static inline var HOST = "amf-server.test";
    static inline var PORT = 9000;
    static inline var PUSH_COUNT = 3;
    static inline var PINGS_WANTED = 1;
    static inline var GIVE_UP_MS = 20000;

    static var socket:Socket;
    static var screen:TextField;
    static var frameLength = -1;
    static var echoResult:Dynamic = null;
    static var ticks:Array<Int> = [];
    static var pushed:Dynamic = null;
    static var pings = 0;
    static var reported = false;
    static var finished = false;
    static var events:Array<String> = [];

    static function main() {
        screen = new TextField();
        screen.width = 780;
        screen.height = 580;
        screen.multiline = true;
        screen.wordWrap = true;
        flash.Lib.current.addChild(screen);
        show("amf-bench e2e: connecting to " + HOST + ":" + PORT);
        socket = new Socket();
        socket.addEventListener(Event.CONNECT, onConnect);
        socket.addEventListener(ProgressEvent.SOCKET_DATA, onData);
        socket.addEventListener(Event.CLOSE, function(_) finish("the server closed the socket"));
        socket.addEventListener(IOErrorEvent.IO_ERROR, function(e:IOErrorEvent) finish("io error: " + e.text));
        socket.addEventListener(SecurityErrorEvent.SECURITY_ERROR, function(e:SecurityErrorEvent) finish("security error: " + e.text));
        haxe.Timer.delay(function() finish("gave up waiting"), GIVE_UP_MS);
        socket.connect(HOST, PORT);
    }

    static function onConnect(_) {
        show("connected");
        request("swf-echo", "echo", sample());
        request("swf-push", "push", {count: PUSH_COUNT, interval_ms: 20, command: "tick"});
    }

    // Covers the AMF3 the runtime must get right: repeated strings (references), nested
    // anonymous objects (trait references), an integer beyond 29 bits (written as a double).
    static function sample():Dynamic {
        return {
            text: "héllo wörld",
            n: 42,
            big: 536870912,
            neg: -7,
            pi: 3.25,
            flag: true,
            none: null,
            list: ([1, "two", 3.5] : Array<Dynamic>),
            nested: {text: "héllo wörld", deep: {k: "v"}}
        };
    }

    static function request(id:String, command:String, params:Dynamic) {
        send({type: "rpcRequest", request: {messageId: id, command: command, params: params}});
    }

    static function send(envelope:Dynamic) {
        var payload = new ByteArray();
        payload.objectEncoding = 3;
        payload.writeObject(envelope);
        socket.writeUnsignedInt(payload.length);
        socket.writeBytes(payload);
        socket.flush();
    }

    // Frames: a 4-byte big-endian length, then one AMF3 value; any number per event.
    static function onData(_) {
        while (true) {
            if (frameLength < 0) {
                if (Std.int(socket.bytesAvailable) < 4) return;
                frameLength = socket.readUnsignedInt();
            }
            if (Std.int(socket.bytesAvailable) < frameLength) return;
            var payload = new ByteArray();
            if (frameLength > 0) socket.readBytes(payload, 0, frameLength);
            frameLength = -1;
            payload.objectEncoding = 3;
            handle(payload.readObject());
        }
    }

    static function handle(envelope:Dynamic) {
        var type:String = envelope.type;
        if (type == "rpcRequest" && envelope.request.command == "amf_socket_ping") {
            pings++;
            send({type: "rpcResponse", response: {messageId: envelope.request.messageId, result: "pong"}});
            show("answered ping " + pings);
        } else if (type == "rpcResponse") {
            var id:String = envelope.response.messageId;
            if (id == "swf-echo") echoResult = envelope.response.result;
            if (id == "swf-push") pushed = envelope.response.result;
            if (id == "swf-report") {
                show("the server echoed the report");
                socket.close();
                finish("closed");
                return;
            }
            show("reply to " + id);
        } else if (type == "rpcMessage") {
            ticks.push(envelope.message.params.index);
            show("message " + envelope.message.command + " " + envelope.message.params.index);
        } else {
            show("unexpected " + type);
        }
        maybeReport();
    }

    static function maybeReport() {
        if (reported || echoResult == null || pushed == null || ticks.length < PUSH_COUNT || pings < PINGS_WANTED)
            return;
        reported = true;
        var report = decoded("reported");
        send({type: "rpcMessage", message: {messageId: "swf-report-message", command: "swf_report", params: report}});
        request("swf-report", "echo", report);
        show("reported to the server");
    }

    static function decoded(status:String):Dynamic {
        return {status: status, echo: echoResult, ticks: ticks, pushed: pushed, pings: pings};
    }

    static function finish(why:String) {
        if (finished) return;
        finished = true;
        var report = decoded(why);
        report.events = events;
        var json = haxe.Json.stringify(report);
        show("done: " + why);
        if (ExternalInterface.available) ExternalInterface.call("amfE2eReport", json);
    }

    static function show(line:String) {
        events.push(line);
        screen.appendText(line + "\n");
    }
}
