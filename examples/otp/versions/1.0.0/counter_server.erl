%% counter_server 1.0.0: a counter whose state is #state{count}.
-module(counter_server).
-behaviour(gen_server).
-vsn("1.0.0").

-export([start_link/0, incr/0, info/0, health/0]).
-export([init/1, handle_call/3, handle_cast/2, code_change/3]).

-record(state, {count = 0 :: non_neg_integer()}).

start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

%% incr() adds one and returns the new value.
incr() -> gen_server:call(?MODULE, incr).

%% info() describes the state, for /state and for tests.
info() -> gen_server:call(?MODULE, info).

health() -> ok.

init([]) ->
    {ok, #state{}}.

handle_call(incr, _From, #state{count = N} = S) ->
    {reply, N + 1, S#state{count = N + 1}};
handle_call(info, _From, #state{count = N} = S) ->
    {reply, #{vsn => "1.0.0", count => N}, S}.

handle_cast(_Msg, S) ->
    {noreply, S}.

code_change(_OldVsn, S, _Extra) ->
    {ok, S}.
