%% counter_server 1.3.0: broken on purpose, differently from 1.2.0: its
%% code_change/3 crashes during the relup from 1.1.0 (the appup passes it
%% the Extra `crash`). release_handler then restarts the node's applications
%% (init:restart/0, same OS process) on the permanent release, 1.1.0.
-module(counter_server).
-behaviour(gen_server).
-vsn("1.3.0").

-export([start_link/0, incr/0, set_step/1, info/0, health/0]).
-export([init/1, handle_call/3, handle_cast/2, code_change/3]).

-record(state, {count = 0 :: non_neg_integer(),
                step = 1 :: pos_integer()}).

start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

incr() -> gen_server:call(?MODULE, incr).

set_step(Step) when is_integer(Step), Step > 0 ->
    gen_server:call(?MODULE, {set_step, Step}).

info() -> gen_server:call(?MODULE, info).

health() -> ok.

init([]) ->
    {ok, #state{}}.

handle_call(incr, _From, #state{count = N, step = Step} = S) ->
    {reply, N + Step, S#state{count = N + Step}};
handle_call({set_step, Step}, _From, S) ->
    {reply, ok, S#state{step = Step}};
handle_call(info, _From, #state{count = N, step = Step} = S) ->
    {reply, #{vsn => "1.3.0", count => N, step => Step}, S}.

handle_cast(_Msg, S) ->
    {noreply, S}.

code_change(_OldVsn, _State, crash) ->
    erlang:error(migration_bug_on_purpose);
%% Upgrade from 1.0.0: {state, Count} becomes #state{count = Count, step = 1}.
code_change(_OldVsn, {state, Count}, _Extra) ->
    {ok, #state{count = Count, step = 1}};
%% Downgrade to 1.0.0: drop the step.
code_change({down, _OldVsn}, #state{count = Count}, _Extra) ->
    {ok, {state, Count}};
code_change(_OldVsn, S, _Extra) ->
    {ok, S}.
