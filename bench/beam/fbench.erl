%% The BEAM's side of Foundation's benches, run by `cargo xtask bench` (and alone by
%% `cargo xtask beam`): `erl -noinput -pa <ebin> -run fbench main <mode>`.
%%
%% Modes:
%% - `local`: one `fbench_pubsub` broadcast to 10,000 subscriber processes, per delivery,
%%   and the same message sent by hand to the same processes (`!` in a loop); then the
%%   headline rows: tell (10,000 casts to a gen_server, then one call), call round trip
%%   (gen_server:call), supervised child start (supervisor:start_child of a
%%   simple_one_for_one supervisor, in chunks of 100 into a fresh supervisor) and the
%%   memory of an idle supervised gen_server.
%% - `cluster`: this node (started with -sname and -setcookie) starts two peer nodes on
%%   loopback; every node runs an `fbench_pubsub` server and 1,000 subscribers; this node
%%   broadcasts 2,000 messages as fast as it can (deliveries/s, median of 3 rounds), then
%%   500 messages 1 ms apart carrying their send time to one subscriber on each peer
%%   (publish-to-delivery latency, p50 and p99); then remote tell and call round trip to
%%   a gen_server on a peer, and the time until a peer killed with SIGKILL is `nodedown`.
%%
%% Each figure is one line on stdout, `figure<TAB>key<TAB>value<TAB>unit`; `info` lines
%% describe the run. Timed sections are medians over samples: each sample ends only when
%% every delivery has been handled (the subscriber whose count reaches the sample's target
%% tells the publisher).
-module(fbench).

-export([main/1, setup_node/3]).
%% Callbacks of the gen_server and the supervisor of the headline rows (one `init/1`
%% serves both; the argument says which).
-export([init/1, handle_call/3, handle_cast/2]).

-define(PUBSUB, fbench).
-define(TOPIC, <<"bench.fanout">>).
-define(LOAD, <<"bench.load">>).
-define(PING, <<"bench.ping">>).

%% Sizes. `erlc -DSMOKE` makes them tiny: a check of the harness in about a second.
-ifdef(SMOKE).
-define(SUBSCRIBERS, 100).
-define(PER_SAMPLE, 2).
-define(SAMPLES, 3).
-define(TELLS, 100).
-define(CALLS, 100).
-define(REMOTE_CALLS, 10).
-define(STARTS, 10).
-define(START_SAMPLES, 3).
-define(NODE_SUBSCRIBERS, 10).
-define(MESSAGES, 20).
-define(PINGS, 20).
-define(ROUNDS, 1).
-else.
-define(SUBSCRIBERS, 10000).
-define(PER_SAMPLE, 20).
-define(SAMPLES, 15).
-define(TELLS, 10000).
-define(CALLS, 10000).
-define(REMOTE_CALLS, 2000).
-define(STARTS, 100).
-define(START_SAMPLES, 50).
-define(NODE_SUBSCRIBERS, 1000).
-define(MESSAGES, 2000).
-define(PINGS, 500).
-define(ROUNDS, 3).
-endif.

main([Mode]) ->
    info(),
    try
        case Mode of
            "local" -> local();
            "cluster" -> cluster()
        end,
        erlang:halt(0)
    catch
        Class:Reason:Stack ->
            io:format("error\t~w:~w ~w~n", [Class, Reason, Stack]),
            erlang:halt(1)
    end.

info() ->
    io:format("info\totp ~s, erts ~s, ~b schedulers online~n", [
        erlang:system_info(otp_release),
        erlang:system_info(version),
        erlang:system_info(schedulers_online)
    ]).

figure(Key, Value, Unit) ->
    io:format("figure\t~s\t~.3f\t~s~n", [Key, float(Value), Unit]).

median(Xs) ->
    S = lists:sort(Xs),
    lists:nth((length(S) + 1) div 2, S).

percentile(Sorted, P) ->
    I = round((length(Sorted) - 1) * P),
    lists:nth(I + 1, Sorted).

now_ns() -> erlang:monotonic_time(nanosecond).

%% ---- local fan-out ----------------------------------------------------------------

local() ->
    fbench_pubsub:start(?PUBSUB),
    Count = atomics:new(1, []),
    Self = self(),
    Pids = [
        spawn(fun() ->
            fbench_pubsub:subscribe(?PUBSUB, ?TOPIC),
            Self ! subscribed,
            counting(Count)
        end)
     || _ <- lists:seq(1, ?SUBSCRIBERS)
    ],
    [
        receive
            subscribed -> ok
        end
     || _ <- Pids
    ],
    Pubsub = fun(Msg) -> fbench_pubsub:broadcast(?PUBSUB, ?TOPIC, Msg) end,
    Send = fun(Msg) -> send_all(Pids, Msg) end,
    %% A warm-up of each, then the samples alternate, so a slow spell lands on both.
    fan_out(Count, Pubsub),
    fan_out(Count, Send),
    Samples = [{fan_out(Count, Pubsub), fan_out(Count, Send)} || _ <- lists:seq(1, ?SAMPLES)],
    {P, S} = lists:unzip(Samples),
    figure("pubsub_local_fanout", median(P), "ns/delivery"),
    figure("send_local_fanout", median(S), "ns/delivery"),
    [exit(Pid, kill) || Pid <- Pids],
    headline().

send_all([Pid | Rest], Msg) ->
    Pid ! Msg,
    send_all(Rest, Msg);
send_all([], _) ->
    ok.

%% A subscriber: counts what it receives; the one whose count reaches the target tells
%% the publisher.
counting(Count) ->
    receive
        {fan, Target, From} ->
            case atomics:add_get(Count, 1, 1) of
                Target -> From ! reached;
                _ -> ok
            end,
            counting(Count)
    end.

%% One sample: ?PER_SAMPLE messages to every subscriber; nanoseconds per delivery.
fan_out(Count, Broadcast) ->
    Target = atomics:get(Count, 1) + ?PER_SAMPLE * ?SUBSCRIBERS,
    Msg = {fan, Target, self()},
    T0 = now_ns(),
    repeat(?PER_SAMPLE, fun() -> Broadcast(Msg) end),
    receive
        reached -> ok
    end,
    (now_ns() - T0) / (?PER_SAMPLE * ?SUBSCRIBERS).

repeat(0, _) ->
    ok;
repeat(N, F) ->
    F(),
    repeat(N - 1, F).

%% ---- headline rows ----------------------------------------------------------------

init(counter) ->
    {ok, 0};
init(sup) ->
    Child = #{id => counter, start => {gen_server, start_link, [?MODULE, counter, []]}},
    {ok, {#{strategy => simple_one_for_one, intensity => 1000, period => 1}, [Child]}}.

handle_call(get, _From, N) -> {reply, N, N}.
handle_cast(incr, N) -> {noreply, N + 1}.

headline() ->
    {ok, Server} = gen_server:start(?MODULE, counter, []),
    Tell = fun() ->
        T0 = now_ns(),
        repeat(?TELLS, fun() -> gen_server:cast(Server, incr) end),
        _ = gen_server:call(Server, get),
        (now_ns() - T0) / ?TELLS
    end,
    Call = fun() ->
        T0 = now_ns(),
        repeat(?CALLS, fun() -> gen_server:call(Server, get) end),
        (now_ns() - T0) / ?CALLS
    end,
    Tell(),
    Call(),
    Rounds = [{Tell(), Call()} || _ <- lists:seq(1, ?SAMPLES)],
    {Tells, Calls} = lists:unzip(Rounds),
    figure("tell", median(Tells), "ns/msg"),
    figure("call", median(Calls), "ns"),
    gen_server:stop(Server),
    process_flag(trap_exit, true),
    Starts = [child_starts() || _ <- lists:seq(1, ?START_SAMPLES)],
    figure("child_start", median(Starts), "ns"),
    figure("idle_process_memory", idle_memory(), "B").

%% ?STARTS children started into a fresh supervisor; nanoseconds per start. The
%% supervisor's start and shutdown are not timed.
child_starts() ->
    {ok, Sup} = supervisor:start_link(?MODULE, sup),
    T0 = now_ns(),
    repeat(?STARTS, fun() -> {ok, _} = supervisor:start_child(Sup, []) end),
    T = now_ns() - T0,
    unlink(Sup),
    exit(Sup, shutdown),
    wait_down(Sup),
    T / ?STARTS.

wait_down(Pid) ->
    Ref = erlang:monitor(process, Pid),
    receive
        {'DOWN', Ref, process, Pid, _} -> ok
    end.

%% Bytes of an idle gen_server started by a simple_one_for_one supervisor, as
%% erlang:process_info/2 reports them (heap, stack, mailbox, process structure), plus
%% the supervisor's growth per child: median over 1,000 children.
idle_memory() ->
    {ok, Sup} = supervisor:start_link(?MODULE, sup),
    {memory, Before} = erlang:process_info(Sup, memory),
    Children = [
        begin
            {ok, C} = supervisor:start_child(Sup, []),
            C
        end
     || _ <- lists:seq(1, 1000)
    ],
    {memory, After} = erlang:process_info(Sup, memory),
    Own = [
        begin
            {memory, M} = erlang:process_info(C, memory),
            M
        end
     || C <- Children
    ],
    unlink(Sup),
    exit(Sup, shutdown),
    wait_down(Sup),
    median(Own) + (After - Before) / 1000.

%% ---- cluster ----------------------------------------------------------------------

cluster() ->
    Ebin = filename:dirname(code:which(?MODULE)),
    Suffix = os:getpid(),
    Cookie = atom_to_list(erlang:get_cookie()),
    Peers = [
        begin
            Name = list_to_atom("fbench_" ++ L ++ "_" ++ Suffix),
            {ok, Peer, Node} = peer:start_link(#{
                name => Name,
                args => ["-setcookie", Cookie, "-pa", Ebin]
            }),
            {Peer, Node}
        end
     || L <- ["b", "c"]
    ],
    Nodes = [node() | [N || {_, N} <- Peers]],
    Self = self(),
    [ok = erpc:call(N, ?MODULE, setup_node, [Self, ?NODE_SUBSCRIBERS, ?MESSAGES]) || N <- Nodes],
    wait_servers(length(Nodes), erlang:monotonic_time(millisecond) + 30000),
    Rates = [throughput(Round, length(Nodes)) || Round <- lists:seq(1, ?ROUNDS)],
    io:format("info\tcluster rounds (deliveries/s): ~p~n", [[round(R) || R <- Rates]]),
    figure("pubsub_cluster_broadcast", median(Rates), "deliveries/s"),
    Lat = latency(length(Nodes) - 1),
    figure("pubsub_cluster_latency_p50", percentile(Lat, 0.5), "us"),
    figure("pubsub_cluster_latency_p99", percentile(Lat, 0.99), "us"),
    [{_, B} | _] = Peers,
    remote(B),
    stop_peers(Peers),
    killed(Ebin, Cookie, Suffix),
    ok.

%% Stops the peers and waits until they are down (a peer that is still going would
%% meet the next nodes started).
stop_peers(Peers) ->
    [true = erlang:monitor_node(N, true) || {_, N} <- Peers],
    [peer:stop(P) || {P, _} <- Peers],
    [
        receive
            {nodedown, N} -> ok
        end
     || {_, N} <- Peers
    ],
    ok.

%% Remote tell (?TELLS casts to a gen_server on node B, then one call) and remote call
%% round trip, as the headline rows do locally; medians of ?SAMPLES.
remote(B) ->
    {ok, Server} = erpc:call(B, gen_server, start, [?MODULE, counter, []]),
    Tell = fun() ->
        T0 = now_ns(),
        repeat(?TELLS, fun() -> gen_server:cast(Server, incr) end),
        _ = gen_server:call(Server, get),
        (now_ns() - T0) / ?TELLS
    end,
    Call = fun() ->
        T0 = now_ns(),
        repeat(?REMOTE_CALLS, fun() -> gen_server:call(Server, get) end),
        (now_ns() - T0) / ?REMOTE_CALLS
    end,
    Tell(),
    Call(),
    Rounds = [{Tell(), Call()} || _ <- lists:seq(1, ?SAMPLES)],
    {Tells, Calls} = lists:unzip(Rounds),
    figure("remote_tell", median(Tells), "ns/msg"),
    figure("remote_call", median(Calls), "ns"),
    gen_server:stop(Server).

%% A connected peer node killed with SIGKILL: milliseconds from asking a shell that is
%% already running to `kill -9` it (a builtin: no process to launch) to `nodedown`,
%% median of 3 nodes. The shell's own round trip (`kill -0`, then an echo back) is
%% printed as an info line.
killed(Ebin, Cookie, Suffix) ->
    Sh = open_port({spawn_executable, "/bin/sh"}, [{args, ["-s"]}, stream, use_stdio]),
    Rounds = [
        begin
            Name = list_to_atom("fbench_k" ++ integer_to_list(I) ++ "_" ++ Suffix),
            {ok, _Peer, Node} = peer:start(#{
                name => Name, args => ["-setcookie", Cookie, "-pa", Ebin]
            }),
            OsPid = erpc:call(Node, os, getpid, []),
            Shell = shell_round_trip(Sh, OsPid),
            true = erlang:monitor_node(Node, true),
            T0 = now_ns(),
            true = port_command(Sh, "kill -9 " ++ OsPid ++ "\n"),
            receive
                {nodedown, Node} -> ok
            end,
            {(now_ns() - T0) / 1.0e6, Shell}
        end
     || I <- lists:seq(1, 3)
    ],
    port_close(Sh),
    {Ms, Shells} = lists:unzip(Rounds),
    io:format("info\tthe shell's kill -0 and echo round trip: ~.3f ms (median)~n", [
        median(Shells)
    ]),
    figure("killed_node_detected", median(Ms), "ms").

%% Milliseconds for the shell to run `kill -0 OsPid` and echo back.
shell_round_trip(Sh, OsPid) ->
    T0 = now_ns(),
    true = port_command(Sh, "kill -0 " ++ OsPid ++ "; echo ok\n"),
    receive
        {Sh, {data, _}} -> (now_ns() - T0) / 1.0e6
    end.

wait_servers(N, Deadline) ->
    case length(fbench_pubsub:servers(?PUBSUB)) >= N of
        true ->
            ok;
        false ->
            erlang:monotonic_time(millisecond) < Deadline orelse error(pg_not_converged),
            timer:sleep(5),
            wait_servers(N, Deadline)
    end.

%% On every node: the pubsub server, ?NODE_SUBSCRIBERS subscribers of the load topic and
%% one subscriber of the ping topic (not on the publisher's node).
setup_node(Driver, Subs, Msgs) ->
    fbench_pubsub:start(?PUBSUB),
    Count = atomics:new(1, []),
    Self = self(),
    [
        spawn(fun() ->
            fbench_pubsub:subscribe(?PUBSUB, ?LOAD),
            Self ! subscribed,
            load_subscriber(Count, Subs * Msgs, Driver)
        end)
     || _ <- lists:seq(1, Subs)
    ],
    [
        receive
            subscribed -> ok
        end
     || _ <- lists:seq(1, Subs)
    ],
    case node(Driver) =:= node() of
        true ->
            ok;
        false ->
            spawn(fun() ->
                fbench_pubsub:subscribe(?PUBSUB, ?PING),
                Self ! subscribed,
                ping_subscriber(Driver)
            end),
            receive
                subscribed -> ok
            end
    end,
    ok.

%% Counts the load messages of its node; the one whose count completes a round tells
%% the driver the wall-clock time.
load_subscriber(Count, PerRound, Driver) ->
    receive
        {load, Round} ->
            case atomics:add_get(Count, 1, 1) =:= Round * PerRound of
                true -> Driver ! {done, node(), os:system_time(nanosecond)};
                false -> ok
            end,
            load_subscriber(Count, PerRound, Driver)
    end.

ping_subscriber(Driver) ->
    receive
        {ping, Sent} ->
            Driver ! {lat, os:system_time(nanosecond) - Sent},
            ping_subscriber(Driver)
    end.

%% One round: ?MESSAGES broadcasts as fast as the publisher can; deliveries per second
%% from the first broadcast to the last node's last delivery.
throughput(Round, NodeCount) ->
    Msg = {load, Round},
    T0 = os:system_time(nanosecond),
    repeat(?MESSAGES, fun() -> fbench_pubsub:broadcast(?PUBSUB, ?LOAD, Msg) end),
    End = lists:max([
        receive
            {done, _, At} -> At
        end
     || _ <- lists:seq(1, NodeCount)
    ]),
    NodeCount * ?NODE_SUBSCRIBERS * ?MESSAGES / ((End - T0) / 1.0e9).

%% ?PINGS broadcasts 1 ms apart, each carrying its send time; microseconds from send to
%% arrival at each ping subscriber, sorted.
latency(Receivers) ->
    repeat(?PINGS, fun() ->
        fbench_pubsub:broadcast(?PUBSUB, ?PING, {ping, os:system_time(nanosecond)}),
        timer:sleep(1)
    end),
    lists:sort([
        receive
            {lat, Ns} -> Ns / 1000
        end
     || _ <- lists:seq(1, ?PINGS * Receivers)
    ]).
