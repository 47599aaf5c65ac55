%% Phoenix.PubSub's design in plain Erlang: the BEAM competitor of Foundation's pubsub
%% benches (`cargo xtask bench`, see docs/benchmarks.md). Our own code, written from the
%% design, not from Phoenix's sources.
%%
%% - One server process per node and pubsub name, registered locally under the name and
%%   a member of the `pg` group `{fbench_pubsub, Name}` (scope `fbench_pg`).
%% - Subscriptions live in a public ETS `duplicate_bag` keyed by topic (as Phoenix keeps
%%   them in a duplicate-key `Registry`); the server monitors each subscriber and removes
%%   its entries when it exits.
%% - `broadcast/3` sends the message once to every other node's server (the `pg` members
%%   not on this node), then dispatches to this node's subscribers in the caller's
%%   process; a server that receives a forward dispatches to its own node's subscribers.
-module(fbench_pubsub).

-export([start/1, subscribe/2, broadcast/3, local_broadcast/3, servers/1]).

-define(SCOPE, fbench_pg).

%% Starts the server of pubsub `Name` on this node (and the `pg` scope if needed).
-spec start(atom()) -> pid().
start(Name) ->
    case pg:start(?SCOPE) of
        {ok, _} -> ok;
        {error, {already_started, _}} -> ok
    end,
    Parent = self(),
    Pid = spawn(fun() -> init(Name, Parent) end),
    receive
        {ready, Pid} -> Pid
    end.

init(Name, Parent) ->
    true = register(Name, self()),
    Name = ets:new(Name, [duplicate_bag, public, named_table, {read_concurrency, true}]),
    ok = pg:join(?SCOPE, {?MODULE, Name}, self()),
    Parent ! {ready, self()},
    loop(Name).

loop(Name) ->
    receive
        {forward, Topic, Msg} ->
            local_broadcast(Name, Topic, Msg),
            loop(Name);
        {monitor, Pid} ->
            erlang:monitor(process, Pid),
            loop(Name);
        {'DOWN', _, process, Pid, _} ->
            ets:match_delete(Name, {'_', Pid}),
            loop(Name);
        stop ->
            ok
    end.

%% Subscribes the calling process to `Topic`.
-spec subscribe(atom(), term()) -> ok.
subscribe(Name, Topic) ->
    true = ets:insert(Name, {Topic, self()}),
    Name ! {monitor, self()},
    ok.

%% Every subscriber of `Topic` in the cluster: once to each other node's server, then
%% this node's subscribers.
-spec broadcast(atom(), term(), term()) -> ok.
broadcast(Name, Topic, Msg) ->
    Here = node(),
    Forward = {forward, Topic, Msg},
    [Pid ! Forward || Pid <- pg:get_members(?SCOPE, {?MODULE, Name}), node(Pid) =/= Here],
    local_broadcast(Name, Topic, Msg).

%% This node's subscribers of `Topic`.
-spec local_broadcast(atom(), term(), term()) -> ok.
local_broadcast(Name, Topic, Msg) ->
    dispatch(ets:lookup(Name, Topic), Msg).

dispatch([{_, Pid} | Rest], Msg) ->
    Pid ! Msg,
    dispatch(Rest, Msg);
dispatch([], _) ->
    ok.

%% The servers of pubsub `Name` across the cluster, as `pg` sees them here.
-spec servers(atom()) -> [pid()].
servers(Name) ->
    pg:get_members(?SCOPE, {?MODULE, Name}).
