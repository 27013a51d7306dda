-module(counter_sup).
-behaviour(supervisor).

-export([start_link/0, init/1]).

start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

init([]) ->
    Children = [
        #{id => counter_server, start => {counter_server, start_link, []}},
        #{id => counter_http, start => {counter_http, start_link, [port()]}}
    ],
    {ok, {#{strategy => one_for_one, intensity => 5, period => 10}, Children}}.

port() ->
    case os:getenv("COUNTER_HTTP_PORT") of
        false -> 8080;
        Port -> list_to_integer(Port)
    end.
